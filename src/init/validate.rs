//! Validation of the account request: every `CLUSTER_*` and account-related
//! `LABKIT_*` value is checked here, before anything is written. Pure code.
//!
//! The rules are deliberately stricter than shadow-utils: these values end up
//! inside colon-separated files and sudoers rules, so anything that could
//! inject a field or a line is refused.

use crate::init::exit::Fatal;

/// Longest user or group name accepted (shadow-utils' default limit).
pub(crate) const NAME_MAX: usize = 32;
/// Largest id accepted (moby and containerd cap ids at 2^31 - 1).
pub(crate) const ID_MAX: u32 = 2_147_483_647;
/// The overflow id (`nobody`); files owned by it are unattributable on NFS.
pub(crate) const OVERFLOW_ID: u32 = 65534;

/// Check a user or group name; `var` names the variable for the message.
pub(crate) fn name(var: &str, value: &str) -> Result<(), Fatal> {
    let rule = "a name is 1-32 characters of A-Z a-z 0-9 _ . -, not starting with '-' and not all digits";
    let bad = |why: &str| Err(Fatal::config(format!("{var}={value:?} is not a valid name: {why}; {rule}")));
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > NAME_MAX {
        return bad(&format!("it is {} bytes long", value.len()));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return bad(&format!("it contains {c:?}"));
    }
    if value.starts_with('-') {
        return bad("it starts with '-'");
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return bad("it is all digits (it would be read as an id)");
    }
    if value == "." || value == ".." {
        return bad("it is a path component");
    }
    Ok(())
}

/// Check a numeric id; `root_name` says whether the matching name is `root`
/// (id 0 is accepted only for that explicit root case).
pub(crate) fn id(var: &str, value: &str, root_name: bool) -> Result<u32, Fatal> {
    let rule = "an id is plain decimal digits in 1..=2147483647, not 65534 (0 only with the name root)";
    let bad = |why: &str| Err(Fatal::config(format!("{var}={value:?} is not a valid id: {why}; {rule}")));
    if value.is_empty() {
        return bad("it is empty");
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return bad("it is not plain decimal digits");
    }
    if value.len() > 1 && value.starts_with('0') {
        return bad("it has a leading zero");
    }
    let Ok(n) = value.parse::<u64>() else { return bad("it is too large") };
    if n > u64::from(ID_MAX) {
        return bad("it is above 2147483647");
    }
    let n = n as u32;
    if n == OVERFLOW_ID {
        return bad("65534 is the overflow id (nobody)");
    }
    if n == 0 && !root_name {
        return bad("id 0 is root's");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_values() {
        for n in ["alice", "CVLAB-unit", "a", "a.b_c-d", "_svc", "x1", &"a".repeat(32)] {
            assert!(name("CLUSTER_USER", n).is_ok(), "{n}");
        }
        assert_eq!(id("CLUSTER_USER_ID", "123456", false).unwrap(), 123456);
        assert_eq!(id("CLUSTER_USER_ID", "2147483647", false).unwrap(), ID_MAX);
        assert_eq!(id("CLUSTER_USER_ID", "0", true).unwrap(), 0);
    }

    #[test]
    fn bad_names_name_the_variable() {
        let e = name("CLUSTER_GROUP_NAME", "a:b").unwrap_err();
        assert_eq!(e.code, 125);
        assert!(e.message.starts_with("CLUSTER_GROUP_NAME=\"a:b\""), "{}", e.message);
        assert!(!e.message.contains('\n'));
    }
}
