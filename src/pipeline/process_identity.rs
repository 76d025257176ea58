//! What tells this process's telemetry from every other process's: a `service.instance.id` drawn
//! once per process (and drawn again in a forked child), `process.pid` and `host.name`, the
//! attributes a Python SDK process/host resource detector would give. Without them, two processes
//! of one server (or two replicas under one service name) export the same cumulative metric series
//! and the backend sees one series whose counts jump back and forth. See docs/design/fork-safety.md
//! for how a forked child is told from its parent.

use opentelemetry::KeyValue;
use parking_lot::Mutex;
use rand::RngCore;

pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
pub const PROCESS_PID: &str = "process.pid";
pub const HOST_NAME: &str = "host.name";

/// (fork generation, instance id) of this process: kept while the generation is the same, so a
/// pipeline rebuilt after `shutdown` keeps the process's id, and a forked child draws its own.
static INSTANCE_ID: Mutex<Option<(u64, String)>> = Mutex::new(None);

/// A random (version 4) UUID in its usual text form.
pub fn new_uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// This process's instance id (a new one in a forked child).
pub fn instance_id() -> String {
    let generation = crate::fork::generation();
    let mut id = INSTANCE_ID.lock();
    match &*id {
        Some((g, value)) if *g == generation => value.clone(),
        _ => {
            let value = new_uuid_v4();
            *id = Some((generation, value.clone()));
            value
        }
    }
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success
    // (the last byte stays 0 even if it truncates).
    let status = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if status != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// The attributes that identify this process, lowest in the resource's precedence (any value the
/// user gives wins).
pub fn attributes() -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new(SERVICE_INSTANCE_ID, instance_id()),
        KeyValue::new(PROCESS_PID, i64::from(std::process::id())),
    ];
    if let Some(name) = host_name() {
        attributes.push(KeyValue::new(HOST_NAME, name));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let a = new_uuid_v4();
        let b = new_uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'));
        assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_instance_id_is_kept_within_a_process() {
        assert_eq!(instance_id(), instance_id());
    }

    #[test]
    fn a_forked_child_draws_a_new_instance_id() {
        let parent = instance_id();
        // SAFETY: the child only computes an id, compares and exits (no other thread is needed;
        // the lock is not held across the fork).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let child = instance_id();
            let code = if child != parent && child == instance_id() {
                0
            } else {
                1
            };
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0);
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(instance_id(), parent);
    }

    #[test]
    fn the_host_name_is_found() {
        assert!(host_name().is_some_and(|n| !n.is_empty()));
    }
}
