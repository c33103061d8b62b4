//! `{hostname}`, `{instance_id}` and `{task_id}` in log group and stream names and in metric
//! dimension values: which exist, and their values on this host.
//!
//! `config` only checks that a template names known placeholders ([`check`]); the agent looks
//! the values up once at startup ([`Placeholders::discover`], best effort through `metadata`)
//! and sources resolve templates with them ([`Placeholders::resolve`]). A fact that cannot be
//! found resolves to `unknown` rather than failing the start: a name is still produced.

/// Every placeholder a template may use.
pub const PLACEHOLDERS: [&str; 3] = ["{hostname}", "{instance_id}", "{task_id}"];

/// What a placeholder becomes when its fact is unknown (no metadata, local mode).
pub const UNKNOWN: &str = "unknown";

/// The first `{...}` in `template` that is not a known placeholder, as an `Err`.
pub fn check(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let end = after.find('}').map_or(after.len(), |e| e + 1);
        let candidate = &after[..end];
        if !PLACEHOLDERS.contains(&candidate) {
            return Err(candidate.to_owned());
        }
        rest = &after[end..];
    }
    Ok(())
}

/// The values of the placeholders on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placeholders {
    /// `{hostname}`.
    pub hostname: Option<String>,
    /// `{instance_id}`: the EC2 instance id.
    pub instance_id: Option<String>,
    /// `{task_id}`: the ECS task id (the last part of the task ARN).
    pub task_id: Option<String>,
}

impl Placeholders {
    /// Looks the facts up (hostname, IMDS unless `local_mode`, ECS task metadata); each lookup
    /// is bounded by a short timeout in `metadata`.
    pub async fn discover(local_mode: bool) -> Self {
        let task_id = crate::metadata::ecs_task_metadata()
            .await
            .and_then(|task| task.get("TaskARN")?.as_str().map(str::to_owned))
            .and_then(|arn| task_id_of_arn(&arn));
        Placeholders {
            hostname: crate::metadata::hostname(),
            instance_id: crate::metadata::instance_id(local_mode).await,
            task_id,
        }
    }

    /// `template` with every placeholder replaced by its value (or [`UNKNOWN`]).
    pub fn resolve(&self, template: &str) -> String {
        let value = |v: &Option<String>| v.clone().unwrap_or_else(|| UNKNOWN.to_owned());
        template
            .replace("{hostname}", &value(&self.hostname))
            .replace("{instance_id}", &value(&self.instance_id))
            .replace("{task_id}", &value(&self.task_id))
    }
}

/// The task id of an ECS task ARN (`arn:aws:ecs:region:acct:task/cluster/ID` or `task/ID`).
pub fn task_id_of_arn(arn: &str) -> Option<String> {
    let id = arn.rsplit('/').next()?;
    (!id.is_empty() && arn.contains(":task/")).then(|| id.to_owned())
}

/// A log group name CloudWatch accepts: characters outside `[.-_/#A-Za-z0-9]` become `_`,
/// cut to 512 characters; `unknown` when empty.
pub fn legal_log_group(name: &str) -> String {
    let legal = |c: char| c.is_ascii_alphanumeric() || ".-_/#".contains(c);
    legal_name(name, legal)
}

/// A log stream name CloudWatch accepts: `:` and `*` become `_`, cut to 512 characters.
pub fn legal_log_stream(name: &str) -> String {
    legal_name(name, |c| c != ':' && c != '*')
}

fn legal_name(name: &str, legal: impl Fn(char) -> bool) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if legal(c) { c } else { '_' })
        .take(512)
        .collect();
    if cleaned.is_empty() {
        UNKNOWN.to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_known_placeholders_only() {
        assert_eq!(check("/metrics/{task_id}"), Ok(()));
        assert_eq!(check("{hostname}-{instance_id}"), Ok(()));
        assert_eq!(check("plain"), Ok(()));
        assert_eq!(check("/m/{task}"), Err("{task}".into()));
        assert_eq!(check("/m/{open"), Err("{open".into()));
    }

    #[test]
    fn resolves_known_values_and_unknown_ones() {
        let p = Placeholders {
            hostname: Some("web-1".into()),
            instance_id: None,
            task_id: Some("abc".into()),
        };
        assert_eq!(p.resolve("/metrics/{task_id}"), "/metrics/abc");
        assert_eq!(p.resolve("{hostname}/{instance_id}"), "web-1/unknown");
    }

    #[test]
    fn task_ids_and_legal_names() {
        assert_eq!(
            task_id_of_arn("arn:aws:ecs:us-east-1:1:task/cluster/0123abcd"),
            Some("0123abcd".into())
        );
        assert_eq!(task_id_of_arn("arn:aws:ecs:us-east-1:1:cluster/x"), None);
        assert_eq!(legal_log_group("/a b/c:d"), "/a_b/c_d");
        assert_eq!(legal_log_stream("host:1*"), "host_1_");
        assert_eq!(legal_log_group(""), "unknown");
    }
}
