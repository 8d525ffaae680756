//! `labkit job submit`, `shell` and `forward`: thin wrappers around kubectl
//! and runai. Deciding the argv is pure ([`Invocation`]); [`Invocation::run`]
//! is the one place that starts a process, and [`Invocation::dry_run_text`]
//! prints instead a shell script that would do the same.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

use crate::job::command::join;
use crate::job::profile::Profile;
use crate::job::spec::Form;

/// A program to run, with what goes to its standard input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invocation {
    pub(crate) argv: Vec<String>,
    pub(crate) stdin: Option<String>,
}

/// `kubectl apply -f -` with the manifest on stdin.
pub(crate) fn apply(kubectl: &str, yaml: String) -> Invocation {
    Invocation { argv: vec![kubectl.into(), "apply".into(), "-f".into(), "-".into()], stdin: Some(yaml) }
}

fn namespace_args(profile: &Profile) -> Vec<String> {
    match &profile.job.namespace {
        Some(ns) => vec!["--namespace".into(), ns.clone()],
        None => vec![],
    }
}

/// The object kubectl should pick a pod from: `pod/POD` when given, else the
/// Job or Pod named NAME (kubectl takes the Job's first pod).
fn target(form: Form, name: &str, pod: Option<&str>) -> Result<String> {
    Ok(match (pod, form) {
        (Some(p), _) => format!("pod/{p}"),
        (None, Form::Job) => format!("job/{name}"),
        (None, Form::Pod) => format!("pod/{name}"),
        (None, Form::Runai) => bail!(
            "a RunAI job's pods are not named after the job: pass --pod POD (see `runai describe job {name}` or `kubectl get pods -l release={name}`)"
        ),
    })
}

/// `labkit job shell`: the user's login shell (or CMD) in the running job,
/// through labinit so it runs as the cluster user with the job's environment.
pub(crate) fn shell(
    kubectl: &str,
    runai: &str,
    profile: &Profile,
    form: Form,
    name: &str,
    pod: Option<&str>,
    cmd: &[String],
) -> Result<Invocation> {
    let mut tail = vec![profile.job.labinit.clone(), "shell".into()];
    if !cmd.is_empty() {
        tail.push("--".into());
        tail.extend(cmd.iter().cloned());
    }
    let mut argv: Vec<String>;
    if form == Form::Runai && pod.is_none() {
        argv = vec![runai.into(), "exec".into(), name.into(), "--stdin".into(), "--tty".into()];
        if let Some(p) = &profile.job.project {
            argv.extend(["--project".into(), p.clone()]);
        }
    } else {
        argv = vec![kubectl.into(), "exec".into(), "-it".into()];
        argv.extend(namespace_args(profile));
        argv.push(target(form, name, pod)?);
    }
    argv.push("--".into());
    argv.extend(tail);
    Ok(Invocation { argv, stdin: None })
}

/// `labkit job forward`: `kubectl port-forward` of LOCAL:REMOTE pairs.
pub(crate) fn forward(
    kubectl: &str,
    profile: &Profile,
    form: Form,
    name: &str,
    pod: Option<&str>,
    ports: &[String],
    address: Option<&str>,
) -> Result<Invocation> {
    if ports.is_empty() {
        bail!(
            "give at least one port to forward: PORT (the same on both sides) or LOCAL:REMOTE, e.g. 8888 or 8001:8888"
        );
    }
    let mut argv = vec![kubectl.to_string(), "port-forward".into()];
    argv.extend(namespace_args(profile));
    if let Some(a) = address {
        argv.extend(["--address".into(), a.into()]);
    }
    argv.push(target(form, name, pod)?);
    for p in ports {
        argv.push(port_pair(p)?);
    }
    Ok(Invocation { argv, stdin: None })
}

/// `8888` → `8888:8888`; `8001:8888` stays; both sides 1-65535 (local 0 =
/// kubectl picks a free port).
pub(crate) fn port_pair(s: &str) -> Result<String> {
    let (local, remote) = s.split_once(':').unwrap_or((s, s));
    let num = |x: &str, min: u32| x.parse::<u32>().ok().filter(|n| (min..=65535).contains(n));
    match (num(local, 0), num(remote, 1)) {
        (Some(l), Some(r)) => Ok(format!("{l}:{r}")),
        _ => bail!("port {s:?}: write PORT or LOCAL:REMOTE with ports 1 to 65535 (LOCAL 0 lets kubectl choose)"),
    }
}

impl Invocation {
    /// A shell script that does what [`Invocation::run`] would: the quoted
    /// argv, and the standard input as a here-document whose delimiter does
    /// not occur in it.
    pub(crate) fn dry_run_text(&self) -> Result<String> {
        let line = join(&self.argv)?;
        Ok(match &self.stdin {
            None => format!("{line}\n"),
            Some(input) => {
                let mut delim = "LABKIT_EOF".to_string();
                while input.lines().any(|l| l == delim) {
                    delim.push('_');
                }
                let nl = if input.ends_with('\n') { "" } else { "\n" };
                format!("{line} <<'{delim}'\n{input}{nl}{delim}\n")
            }
        })
    }

    /// Run it, wait, and return its exit code (128+N when killed by signal
    /// N). The program not being found is an error naming the flag to fix it.
    pub(crate) fn run(&self) -> Result<u8> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        if self.stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} not found ({e}); install it or pass its path (--kubectl PATH / --runai PATH); --dry-run shows the command",
                self.argv[0]
            ),
            Err(e) => bail!("cannot start {}: {e}", self.argv[0]),
        };
        if let Some(input) = &self.stdin {
            let mut pipe = child.stdin.take().expect("piped");
            if let Err(e) = pipe.write_all(input.as_bytes()) {
                // The program may exit without reading (bad flags): its exit
                // code says more than the broken pipe.
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    bail!("cannot write the manifest to {}: {e}", self.argv[0]);
                }
            }
        }
        let status = child.wait()?;
        use std::os::unix::process::ExitStatusExt;
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => u8::try_from(c).unwrap_or(1),
            (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
            _ => 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs() {
        assert_eq!(port_pair("8888").unwrap(), "8888:8888");
        assert_eq!(port_pair("8001:8888").unwrap(), "8001:8888");
        assert_eq!(port_pair("0:8888").unwrap(), "0:8888");
        for bad in ["0", "70000", "a", "1:2:3", ":8888", "8888:", "8888:0"] {
            assert!(port_pair(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heredoc_delimiter_avoids_the_content() {
        let inv = Invocation { argv: vec!["k".into()], stdin: Some("a\nLABKIT_EOF\n".into()) };
        let t = inv.dry_run_text().unwrap();
        assert!(t.starts_with("k <<'LABKIT_EOF_'\n"), "{t}");
        assert!(t.ends_with("\nLABKIT_EOF_\n"), "{t}");
    }
}
