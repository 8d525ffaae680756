//! Kubernetes naming rules that `labkit job` checks before it prints anything:
//! object names (DNS-1123 and DNS-1035 labels), label values, environment
//! variable names and resource quantities. Pure code.
//!
//! Sources: Kubernetes' `IsDNS1123Label`, `IsDNS1035Label`, `IsValidLabelValue`
//! (k8s.io/apimachinery/pkg/util/validation) and the `Quantity` grammar of the
//! API reference. The JSON schemas used by `kubernetes-validate` do not carry
//! these patterns, so the API server would be the first to notice; we refuse
//! earlier, with the rule in the message.

use anyhow::{bail, Result};

/// Longest DNS-1123 / DNS-1035 label (a Job's name, a pod's hostname, a label value).
pub(crate) const LABEL_MAX: usize = 63;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= LABEL_MAX
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 label that starts with a letter (Service names).
pub(crate) fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// The job's name from the command line: lower-cased, then checked as a
/// DNS-1123 label (the issue's rule: "lower-cased DNS-1123, ≤ 63 chars, or
/// refused"). Returns the name to use; `Err` says which rule failed and, where
/// one exists, a name that would pass.
pub(crate) fn job_name(raw: &str) -> Result<String> {
    let name = raw.to_ascii_lowercase();
    let rule = "a job name is 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit (upper case is lowered for you)";
    if name.is_empty() {
        bail!("the job name is empty; {rule}");
    }
    if name.len() > LABEL_MAX {
        bail!("the job name {raw:?} is {} characters long, more than {LABEL_MAX}; {rule}", name.len());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        let suggestion: String = name
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_string();
        let hint = if is_dns1123_label(&suggestion) { format!(" (e.g. {suggestion:?})") } else { String::new() };
        bail!("the job name {raw:?} contains {c:?}{hint}; {rule}");
    }
    if name.starts_with('-') || name.ends_with('-') {
        bail!("the job name {raw:?} starts or ends with '-'; {rule}");
    }
    debug_assert!(is_dns1123_label(&name));
    Ok(name)
}

/// Check a label value: empty, or at most 63 of `A-Za-z0-9-_.` starting and
/// ending with a letter or digit. `what` names the source for the message.
pub(crate) fn label_value(what: &str, value: &str) -> Result<()> {
    let ok = value.is_empty()
        || (value.len() <= LABEL_MAX
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric());
    if !ok {
        bail!(
            "{what} {value:?} cannot be a Kubernetes label value: it must be at most 63 characters of A-Z a-z 0-9 - _ . and start and end with a letter or digit"
        );
    }
    Ok(())
}

/// An environment variable name that every Kubernetes version from 1.29 and
/// every shell accepts: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn env_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        bail!(
            "{what}: {name:?} is not a usable variable name; write letters, digits and '_', not starting with a digit"
        );
    }
    Ok(())
}

/// A resource quantity as Kubernetes writes it (`16Gi`, `500Mi`, `2`, `1.5G`):
/// a non-negative decimal with an optional binary or decimal SI suffix.
pub(crate) fn quantity(what: &str, q: &str) -> Result<()> {
    let suffixes = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", ""];
    let num = suffixes.iter().find_map(|s| q.strip_suffix(s).filter(|n| !n.is_empty())).unwrap_or("");
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let ok = !(int.is_empty() && frac.is_empty()) && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    if !ok {
        bail!(
            "{what} {q:?} is not a Kubernetes quantity; write a number with an optional unit such as 16Gi, 512Mi or 1G"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "alice-run-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "A", "a.b", &"a".repeat(64), "é"] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1035_label("a0"));
        assert!(!is_dns1035_label("0a"));
    }

    #[test]
    fn job_names_are_lowered_or_refused() {
        assert_eq!(job_name("Alice-Run1").unwrap(), "alice-run1");
        assert_eq!(job_name("x").unwrap(), "x");
        assert_eq!(job_name(&"a".repeat(63)).unwrap().len(), 63);
        let e = job_name(&"a".repeat(64)).unwrap_err().to_string();
        assert!(e.contains("64 characters"), "{e}");
        let e = job_name("alice_run").unwrap_err().to_string();
        assert!(e.contains("'_'") && e.contains("\"alice-run\""), "{e}");
        assert!(job_name("-a").is_err());
        assert!(job_name("a-").is_err());
        assert!(job_name("").is_err());
        assert!(job_name("a.b").is_err());
        // A non-ASCII letter is not lowered into something valid.
        assert!(job_name("Ärger").is_err());
    }

    #[test]
    fn label_values() {
        for ok in ["", "0", "1", "alice", "CVLAB-unit", "a.b_c"] {
            assert!(label_value("x", ok).is_ok(), "{ok}");
        }
        for bad in ["-1", "+1", "a-", "_a", "a b", &"a".repeat(64)] {
            assert!(label_value("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_and_quantities() {
        assert!(env_name("e", "TORCH_HOME").is_ok());
        assert!(env_name("e", "_x1").is_ok());
        for bad in ["", "1X", "A-B", "A=B", "A B"] {
            assert!(env_name("e", bad).is_err(), "{bad}");
        }
        for ok in ["16Gi", "512Mi", "1", "1.5G", "0.5", "100k"] {
            assert!(quantity("q", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Gi", "16GB", "-1Gi", "1.2.3", "16 Gi", "x"] {
            assert!(quantity("q", bad).is_err(), "{bad}");
        }
    }
}
