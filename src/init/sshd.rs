//! The job's environment for ssh sessions: sshd, not labinit, starts them,
//! so the ssh service adds one `SetEnv` line to its sshd_config, written by
//! PID 1 from the job's environment ([`crate::init::job::Children::session_env`])
//! into `/run/labkit` ([`crate::init::state::SSHD_SETENV`]). Pure.
//!
//! ssh sessions get the groups sshd's `initgroups` gives (the account
//! files'), not the runtime's extra gids (`fsGroup`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// Variables an ssh session must get from sshd, not from the job: the
/// identity (sshd sets it from the same passwd entry), the client's terminal
/// and display, the connection, and what a shell keeps for itself.
fn set_by_sshd(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 10] =
        [b"HOME", b"USER", b"LOGNAME", b"SHELL", b"MAIL", b"TERM", b"DISPLAY", b"PWD", b"OLDPWD", b"SHLVL"];
    NAMES.contains(&name) || name == b"_" || name.starts_with(b"SSH_") || name == b"XAUTHORITY"
}

/// What an ssh session gets from the job's environment (see
/// [`set_by_sshd`] for what it does not).
pub(crate) fn session_env(job: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    job.iter().filter(|(k, _)| !set_by_sshd(k.as_bytes())).cloned().collect()
}

/// sshd refuses to start a session with 1000 or more variables
/// (`child_set_env`); it sets about ten itself.
pub(crate) const SSHD_MAX_VARS: usize = 900;

/// The one `SetEnv` line of an sshd_config that gives every session `env`
/// (sshd takes only the first `SetEnv` line, and only the first of a name).
/// Each `NAME=value` is one double-quoted word with `\` and `"` escaped, as
/// OpenSSH ≥ 8.7 reads its configuration; a variable whose name or value
/// holds a line break, or whose name is empty, cannot be written without
/// injecting configuration and is left out, as is anything past
/// [`SSHD_MAX_VARS`]. Returns the line (empty when nothing is set) and one
/// warning per variable left out. Pure.
pub(crate) fn sshd_setenv(env: &[(OsString, OsString)]) -> (Vec<u8>, Vec<String>) {
    let mut line = b"SetEnv".to_vec();
    let mut warnings = Vec::new();
    let mut count = 0;
    for (k, v) in env {
        let (k, v) = (k.as_bytes(), v.as_bytes());
        let bad = |b: &[u8]| b.iter().any(|c| matches!(c, b'\n' | b'\r' | b'\0'));
        if k.is_empty() || k.contains(&b'=') || bad(k) || bad(v) {
            warnings.push(format!(
                "{} is not passed to ssh sessions: its name or value holds a line break, which sshd's configuration cannot hold",
                String::from_utf8_lossy(k).escape_debug()
            ));
            continue;
        }
        if count == SSHD_MAX_VARS {
            warnings.push(format!(
                "only the first {SSHD_MAX_VARS} variables are passed to ssh sessions (sshd's limit); {} and later ones are not",
                String::from_utf8_lossy(k).escape_debug()
            ));
            break;
        }
        count += 1;
        line.extend_from_slice(b" \"");
        for &c in k.iter().chain(b"=").chain(v) {
            if c == b'\\' || c == b'"' {
                line.push(b'\\');
            }
            line.push(c);
        }
        line.push(b'"');
    }
    if count == 0 {
        return (Vec::new(), warnings);
    }
    line.push(b'\n');
    (line, warnings)
}

/// The file the ssh service adds to its sshd_config: a comment, one
/// `# warning: …` line per variable left out (the service prints them when
/// it starts sshd, so a pod without ssh is not warned), and the `SetEnv`
/// line of [`sshd_setenv`]. Pure.
pub fn sshd_setenv_file(env: &[(OsString, OsString)]) -> Vec<u8> {
    let (line, warnings) = sshd_setenv(env);
    let mut out = b"# Written by labinit: the job's environment for ssh sessions. Do not edit.\n".to_vec();
    for w in warnings {
        out.extend_from_slice(format!("# warning: {w}\n").as_bytes());
    }
    out.extend_from_slice(&line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn sshd_setenv_quotes_every_word_and_refuses_line_breaks() {
        let env = os(&[("PATH", "/usr/bin"), ("ODD", "a b\t\"c\" \\d 'e' #f $g"), ("EMPTY", "")]);
        let (line, warnings) = sshd_setenv(&env);
        assert!(warnings.is_empty());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SetEnv \"PATH=/usr/bin\" \"ODD=a b\t\\\"c\\\" \\\\d 'e' #f $g\" \"EMPTY=\"\n"
        );
        // A line break would start a new configuration line ("PermitRootLogin yes").
        let evil = os(&[("A", "1"), ("X", "y\nPermitRootLogin yes"), ("Y\rZ", "1"), ("B", "2")]);
        let (line, warnings) = sshd_setenv(&evil);
        assert_eq!(String::from_utf8(line).unwrap(), "SetEnv \"A=1\" \"B=2\"\n");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("X is not passed"), "{warnings:?}");
        // Nothing to set: no line (sshd refuses `SetEnv` without arguments).
        assert_eq!(sshd_setenv(&[]), (Vec::new(), Vec::new()));
        // The file: every line a comment or the one SetEnv line.
        let file = String::from_utf8(sshd_setenv_file(&evil)).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 4, "{file}");
        assert!(
            lines[1].starts_with("# warning: X is not passed") && lines[2].starts_with("# warning: Y\\rZ"),
            "{file}"
        );
        assert_eq!(lines[3], "SetEnv \"A=1\" \"B=2\"");
    }

    #[test]
    fn sshd_setenv_stays_under_sshds_limit() {
        let env: Vec<(OsString, OsString)> =
            (0..SSHD_MAX_VARS + 5).map(|i| (format!("V{i}").into(), "x".into())).collect();
        let (line, warnings) = sshd_setenv(&env);
        let words = String::from_utf8(line).unwrap().matches(" \"V").count();
        assert_eq!(words, SSHD_MAX_VARS);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains(&format!("V{SSHD_MAX_VARS} and later")), "{warnings:?}");
    }
}
