//! Facts about where the agent runs: hostname, EC2 instance id, ECS task, region from ECS.
//!
//! Used for the X-Ray telemetry records and (later) for `{hostname}`-style placeholders in log
//! group names. Every lookup is best effort with a short timeout: a missing fact is `None`,
//! never an error, and never delays start-up by more than a second or two. `AWS_HOSTNAME` and
//! `AWS_INSTANCE_ID` override what metadata says, as with the X-Ray daemon.

use std::time::Duration;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// This host's name: `AWS_HOSTNAME`, else the kernel's.
pub fn hostname() -> Option<String> {
    if let Ok(name) = std::env::var("AWS_HOSTNAME") {
        if !name.is_empty() {
            return Some(name);
        }
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The EC2 instance id: `AWS_INSTANCE_ID`, else IMDSv2 (skipped in local mode).
pub async fn instance_id(local_mode: bool) -> Option<String> {
    if let Ok(id) = std::env::var("AWS_INSTANCE_ID") {
        if !id.is_empty() {
            return Some(id);
        }
    }
    if local_mode || std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v == "true") {
        return None;
    }
    let client = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(Duration::from_secs(1))
        .build();
    let lookup = client.get("/latest/meta-data/instance-id");
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(id)) => Some(id.as_ref().to_string()),
        _ => None,
    }
}

/// The region of the ECS task we run in, from the task metadata endpoint v4 (`TaskARN`).
pub async fn ecs_region() -> Option<String> {
    let task = ecs_task_metadata().await?;
    let arn = task.get("TaskARN")?.as_str()?;
    region_of_arn(arn)
}

/// The task metadata document (`$ECS_CONTAINER_METADATA_URI_V4/task`), when inside ECS.
pub async fn ecs_task_metadata() -> Option<serde_json::Value> {
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").ok()?;
    let uri: http::Uri = format!("{base}/task").parse().ok()?;
    let body = tokio::time::timeout(LOOKUP_TIMEOUT, http_get(uri))
        .await
        .ok()??;
    serde_json::from_slice(&body).ok()
}

/// The ECS task id: the last part of the task ARN (`arn:aws:ecs:...:task/cluster/ID`).
pub async fn ecs_task_id() -> Option<String> {
    let task = ecs_task_metadata().await?;
    let arn = task.get("TaskARN")?.as_str()?;
    task_id_of_arn(arn)
}

/// The id at the end of a task ARN.
pub fn task_id_of_arn(arn: &str) -> Option<String> {
    let id = arn.rsplit('/').next()?;
    (!id.is_empty() && id != arn).then(|| id.to_string())
}

/// This host's first non-loopback IPv4 address, from the interface list (no network traffic).
pub fn ip_address() -> Option<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cursor = list;
    while !cursor.is_null() && found.is_none() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says how to read it.
            let family = unsafe { (*entry.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let addr = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(ip.to_string());
                }
            }
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// The region field of an ARN (`arn:aws:ecs:us-east-1:123:task/...`).
pub fn region_of_arn(arn: &str) -> Option<String> {
    let region = arn.split(':').nth(3)?;
    (!region.is_empty()).then(|| region.to_string())
}

/// A plain-HTTP GET (the ECS endpoint is link-local HTTP), body only on 200.
async fn http_get(uri: http::Uri) -> Option<Vec<u8>> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let response = client.get(uri).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.into_body().collect().await.ok()?;
    Some(body.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_task_arn() {
        assert_eq!(
            region_of_arn("arn:aws:ecs:eu-west-1:123456789012:task/cluster/abc"),
            Some("eu-west-1".to_string())
        );
        assert_eq!(region_of_arn("not-an-arn"), None);
        assert_eq!(
            task_id_of_arn("arn:aws:ecs:eu-west-1:1:task/cluster/abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(task_id_of_arn("nope"), None);
    }
}
