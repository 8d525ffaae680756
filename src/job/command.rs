//! The container's command line and the two quoting layers it passes through.
//!
//! The container runs labinit, which sets up the account and runs a shell
//! string as the cluster user: `labinit run -c 'cd WORKDIR && exec CMD…'`.
//! Running `cd` as the user (not `workingDir`, which the runtime enters as
//! root) keeps working on NFS homes that root cannot enter (root_squash).
//!
//! Layer 1, the shell: every word of the researcher's command is quoted with
//! `shlex`, so `$`, quotes, spaces and globs reach the program unchanged.
//! Layer 2, Kubernetes: the kubelet expands `$(VAR)` and turns `$$` into `$`
//! in `command`, `args` and `env` values; [`kubernetes_literal`] doubles
//! every `$` so the string arrives as written.

use anyhow::{anyhow, Result};

use crate::job::profile::Profile;
use crate::job::spec::{Command, Gpu, Spec, RENDEZVOUS_PORT};

/// Quote one word for a POSIX shell.
pub(crate) fn quote(word: &str) -> Result<String> {
    shlex::try_quote(word).map(|c| c.into_owned()).map_err(|e| anyhow!("cannot quote {word:?} for a shell: {e}"))
}

/// Quote words and join them with spaces: one line a shell reads back as
/// exactly these words.
pub(crate) fn join(words: &[String]) -> Result<String> {
    Ok(words.iter().map(|w| quote(w)).collect::<Result<Vec<_>>>()?.join(" "))
}

/// Escape a string for Kubernetes' `$(VAR)` expansion in `command`, `args`
/// and `env[].value`: every `$` becomes `$$`, which the kubelet turns back
/// into one `$` (k8s.io/kubernetes third_party/forked/golang/expansion).
pub(crate) fn kubernetes_literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// The shell string labinit runs as the user, or `None` for `labinit wait`.
pub(crate) fn job_string(profile: &Profile, spec: &Spec) -> Result<Option<String>> {
    let cd = format!("cd {} && ", quote(&profile.job.workdir)?);
    Ok(match &spec.command {
        Command::Wait => None,
        Command::Shell(s) => Some(format!("{cd}{s}")),
        Command::Words(words) => match spec.workers {
            None => Some(format!("{cd}exec {}", join(words)?)),
            Some(n) => {
                let per_pod = match spec.gpu {
                    Gpu::Whole(0) => 1,
                    Gpu::Whole(g) => g,
                    Gpu::Fraction(_) => unreachable!("refused by spec::check"),
                };
                // Static rendezvous: every pod reaches the c10d store on the
                // pod of index 0 by its stable DNS name under the headless
                // Service; each pod's node rank is its completion index,
                // which the Job controller puts in JOB_COMPLETION_INDEX.
                let head = [
                    "torchrun".to_string(),
                    format!("--nnodes={n}"),
                    format!("--nproc-per-node={per_pod}"),
                    format!("--master-addr={}", rendezvous_host(&spec.name)),
                    format!("--master-port={RENDEZVOUS_PORT}"),
                ];
                Some(format!("{cd}exec {} --node-rank=\"$JOB_COMPLETION_INDEX\" {}", join(&head)?, join(words)?))
            }
        },
    })
}

/// The host name of the pod of index 0 of an Indexed Job NAME whose pods
/// have `subdomain: NAME` (hostname NAME-0, Service NAME, same namespace).
pub(crate) fn rendezvous_host(name: &str) -> String {
    format!("{name}-0.{name}")
}

/// The container's argv, before the Kubernetes escaping.
pub(crate) fn container_argv(profile: &Profile, spec: &Spec) -> Result<Vec<String>> {
    let labinit = profile.job.labinit.clone();
    Ok(match job_string(profile, spec)? {
        None => vec![labinit, "wait".into()],
        Some(s) => vec![labinit, "run".into(), "-c".into(), s],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kubernetes' expansion of `$(VAR)` and `$$`, as documented for
    /// `command`/`args`/`env` ("$$(VAR) is escaped"; undefined references
    /// stay as written), used to prove the escaping is its exact inverse.
    pub(crate) fn kubelet_expand(s: &str, vars: &[(&str, &str)]) -> String {
        let b = s.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' && i + 1 < b.len() {
                match b[i + 1] {
                    b'$' => {
                        out.push('$');
                        i += 2;
                        continue;
                    }
                    b'(' => {
                        if let Some(end) = s[i + 2..].find(')') {
                            let name = &s[i + 2..i + 2 + end];
                            if let Some((_, v)) = vars.iter().find(|(k, _)| *k == name) {
                                out.push_str(v);
                                i += 3 + end;
                                continue;
                            }
                        }
                    }
                    _ => {}
                }
            }
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
        out
    }

    #[test]
    fn kubernetes_escaping_round_trips() {
        let vars = [("HOME", "/root"), ("X", "1")];
        for s in ["plain", "$HOME", "$(HOME)", "$$", "a$", "$(X)$(Y)", "echo $$ $(date) ${X}", "$", "é$(X)é"] {
            assert_eq!(kubelet_expand(&kubernetes_literal(s), &vars), s, "{s}");
        }
        // Negative control: without the escaping the kubelet changes these.
        assert_ne!(kubelet_expand("$(HOME)", &vars), "$(HOME)");
        assert_ne!(kubelet_expand("$$", &vars), "$$");
    }

    #[test]
    fn quoting_round_trips_through_shlex() {
        let words: Vec<String> =
            ["python", "a b.py", "--x=$HOME", "it's", "\"q\"", "*", "", "a\nb", "ü", "-"].map(String::from).to_vec();
        let line = join(&words).unwrap();
        assert_eq!(shlex::split(&line).unwrap(), words);
        assert!(quote("a\0b").is_err());
    }
}
