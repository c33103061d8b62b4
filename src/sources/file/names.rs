//! Group and stream names: fills a template's placeholders for one file and makes the result
//! legal (a character the name may not hold becomes `_`; at most 512 characters).
//!
//! Pure once a [`NameContext`] is gathered; [`NameContext::gather`] is the only I/O (the
//! metadata lookups, each best effort). A missing fact renders as `unknown`.

use std::path::Path;

use chrono::NaiveDate;

use crate::config::{NameKind, NamePart, NameTemplate, Placeholder, MAX_NAME_LEN};
use crate::metadata;

/// The facts about this host that placeholders refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameContext {
    /// `{hostname}`.
    pub hostname: Option<String>,
    /// `{instance_id}`.
    pub instance_id: Option<String>,
    /// `{ip_address}`.
    pub ip_address: Option<String>,
    /// `{aws_region}`.
    pub aws_region: Option<String>,
    /// `{task_id}`.
    pub task_id: Option<String>,
}

impl NameContext {
    /// Looks everything up: hostname and IP locally, instance id from IMDS (not in local
    /// mode), the task id from ECS metadata. `region` is the one the AWS config resolved.
    pub async fn gather(local_mode: bool, region: Option<String>) -> Self {
        NameContext {
            hostname: metadata::hostname(),
            instance_id: metadata::instance_id(local_mode).await,
            ip_address: metadata::ip_address(),
            aws_region: region,
            task_id: metadata::ecs_task_id().await,
        }
    }

    /// What can be known without asking a network service (for `check-config`).
    pub fn offline(region: Option<String>) -> Self {
        NameContext {
            hostname: metadata::hostname(),
            instance_id: std::env::var("AWS_INSTANCE_ID")
                .ok()
                .filter(|s| !s.is_empty()),
            ip_address: metadata::ip_address(),
            aws_region: region,
            task_id: None,
        }
    }

    fn value(&self, placeholder: Placeholder) -> Option<&str> {
        match placeholder {
            Placeholder::Hostname => self.hostname.as_deref(),
            Placeholder::InstanceId => self.instance_id.as_deref(),
            Placeholder::IpAddress => self.ip_address.as_deref(),
            Placeholder::AwsRegion => self.aws_region.as_deref(),
            Placeholder::TaskId => self.task_id.as_deref(),
            Placeholder::FileName | Placeholder::Date => None,
        }
    }
}

/// The name `template` gives the file at `path`, opened on `date`, made legal for `kind`.
pub fn render(
    template: &NameTemplate,
    kind: NameKind,
    context: &NameContext,
    path: &Path,
    date: NaiveDate,
) -> String {
    let mut name = String::new();
    for part in &template.parts {
        match part {
            NamePart::Literal(text) => name.push_str(text),
            NamePart::Placeholder(Placeholder::FileName) => {
                let file = path.file_name().map(|f| f.to_string_lossy());
                name.push_str(file.as_deref().unwrap_or("unknown"));
            }
            NamePart::Placeholder(Placeholder::Date) => {
                name.push_str(&date.format("%Y-%m-%d").to_string())
            }
            NamePart::Placeholder(p) => name.push_str(context.value(*p).unwrap_or("unknown")),
        }
    }
    sanitize(&name, kind)
}

/// `name` with every character `kind` forbids replaced by `_`, cut to 512; never empty.
pub fn sanitize(name: &str, kind: NameKind) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if kind.allows(c) { c } else { '_' })
        .collect();
    if out.len() > MAX_NAME_LEN {
        let cut = super::reader::floor_char_boundary(&out, MAX_NAME_LEN);
        out.truncate(cut);
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> NameContext {
        NameContext {
            hostname: Some("web 1:prod".into()),
            instance_id: Some("i-0abc".into()),
            ip_address: Some("10.0.0.7".into()),
            aws_region: Some("eu-west-1".into()),
            task_id: None,
        }
    }

    fn name(template: &str, kind: NameKind, path: &str) -> String {
        let t = NameTemplate::parse(template, kind).unwrap();
        let date = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        render(&t, kind, &context(), Path::new(path), date)
    }

    #[test]
    fn placeholders_are_filled_and_made_legal() {
        assert_eq!(
            name("/app/{hostname}/{aws_region}", NameKind::Group, "/x/a.log"),
            "/app/web_1_prod/eu-west-1"
        );
        assert_eq!(
            name(
                "{hostname}-{file_name}-{date}",
                NameKind::Stream,
                "/x/a*b.log"
            ),
            "web 1_prod-a_b.log-2026-01-31"
        );
        assert_eq!(
            name("{ip_address}/{instance_id}", NameKind::Group, "/a"),
            "10.0.0.7/i-0abc"
        );
        assert_eq!(name("t/{task_id}", NameKind::Group, "/a"), "t/unknown");
        assert_eq!(
            name("g/{file_name}", NameKind::Group, "/d/my app.log"),
            "g/my_app.log"
        );
    }

    #[test]
    fn sanitize_caps_and_never_empties() {
        assert_eq!(sanitize(&"é".repeat(300), NameKind::Stream).len(), 512);
        assert_eq!(sanitize(&"a".repeat(600), NameKind::Group).len(), 512);
        assert_eq!(sanitize("", NameKind::Group), "_");
        assert_eq!(sanitize("ü", NameKind::Group), "_");
    }
}
