//! The ssh service (`services/ssh`) with a real sshd: labinit is PID 1 of
//! fresh PID, mount and network namespaces, with private copies of /etc and
//! private /home, /run and /root bind-mounted over the host's (whole
//! directories, never single files), so the account, host keys and sshd
//! files never touch the host. `ssh -i KEY -p PORT alice@127.0.0.1 id` on the
//! namespace's loopback shows the cluster uid; root login and password login
//! are refused. Controls: an unknown key is refused by the same server, and
//! without SSH_PUBLIC_KEY the service exits 0 at once (no sshd). A session
//! gets the job's environment: every variable `labinit shell` gets (the
//! container's, the steps' exports, the job's PATH), odd characters intact,
//! except what sshd sets per session. The service script alone: hostile keys
//! (options, shell syntax, several lines) and ports are refused with one
//! error line and never reach the key writer or sshd.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::ns::Run;
use nix::libc;

const PORT: &str = "2222";

fn have(tool: &str) -> bool {
    Path::new(tool).exists()
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@labkit", "-f"])
        .arg(path)
        .status();
    assert!(st.is_ok_and(|s| s.success()), "ssh-keygen failed");
}

fn ssh(c: &Run, key: &str, who: &str, extra: &[&str]) -> Output {
    ssh_run(c, key, who, extra, "id")
}

fn ssh_run(c: &Run, key: &str, who: &str, extra: &[&str], command: &str) -> Output {
    let mut argv = vec![
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        key,
        "-p",
        PORT,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
    ];
    argv.extend_from_slice(extra);
    argv.push(who);
    argv.push(command);
    c.exec(&["-n"], &argv, &[("PATH", "/usr/bin:/bin")]).output().expect("ssh")
}

#[test]
fn sshd_lets_alice_in_with_her_key_only() {
    if !have("/usr/sbin/sshd") || !have("/usr/bin/ssh") {
        eprintln!("skipped: needs openssh-server and openssh-client");
        return;
    }
    // The private keys are made in a directory of their own, kept for the test.
    let keys = common::TempDir::new("ssh-keys");
    keygen(&keys.join("key"));
    keygen(&keys.join("other"));
    let pubkey = std::fs::read_to_string(keys.join("key.pub")).unwrap();
    let key = keys.join("key").display().to_string();
    let other = keys.join("other").display().to_string();

    let services = format!("{}/services", env!("CARGO_MANIFEST_DIR"));
    let key_env = format!("  {}\n\n", pubkey.trim());
    let env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("CLUSTER_USER", "alice"),
        ("CLUSTER_USER_ID", "123456"),
        ("CLUSTER_GROUP_NAME", "CVLAB-unit"),
        ("CLUSTER_GROUP_ID", "11166"),
        ("SSH_PORT", PORT),
        ("SSH_PUBLIC_KEY", key_env.as_str()),
        ("LABKIT_SERVICES_DIR", services.as_str()),
        ("LABKIT_STEPS_DIR", "/nonexistent"),
        ("LABKIT_IDLE_TIMEOUT", "0"),
        ("LABKIT_SERVICE_GRACE", "2s"),
    ];
    let mut c = Run::script(&["--net", "--mount"], SCRIPT, &env, |d| private_dirs(d, &pubkey));
    assert!(c.logged("ssh: Server listening on"), "sshd did not start:\n{}", c.stderr());

    let out = ssh(&c, &key, "alice@127.0.0.1", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("uid=123456(alice) gid=11166(CVLAB-unit)"),
        "ssh as alice: {text}\n{}\nlabinit:\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.stderr()
    );
    let home = c.path("home/alice/.ssh/authorized_keys");
    let meta = std::fs::metadata(&home).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (123456, 0o600));
    let dir = std::fs::metadata(c.path("home/alice/.ssh")).unwrap();
    assert_eq!((dir.uid(), dir.permissions().mode() & 0o777), (123456, 0o700));
    assert_eq!(std::fs::read_to_string(&home).unwrap().trim(), pubkey.trim(), "the key, without the blanks around it");

    // Control: the same server refuses a key that was not given.
    let out = ssh(&c, &other, "alice@127.0.0.1", &[]);
    assert!(!out.status.success(), "an unknown key was accepted");

    // Root, although /root/.ssh/authorized_keys holds the key: refused.
    let out = ssh(&c, &key, "root@127.0.0.1", &[]);
    assert!(!out.status.success(), "root login was accepted: {}", String::from_utf8_lossy(&out.stdout));

    // Passwords are not even offered.
    let out = ssh(
        &c,
        &key,
        "alice@127.0.0.1",
        &["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Permission denied (publickey)"), "{err}");

    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
    assert!(c.stderr().contains("sent SIGTERM to the services"), "{}", c.stderr());
}

/// `env -0` output as sorted `NAME=value` entries.
fn env_entries(out: &[u8]) -> std::collections::BTreeSet<String> {
    out.split(|b| *b == 0).filter(|e| !e.is_empty()).map(|e| String::from_utf8_lossy(e).into_owned()).collect()
}

/// Case init/20: an ssh session has the job's environment — the container's
/// variables (LD_LIBRARY_PATH, NVIDIA_*, values with blanks, quotes,
/// backslashes, `#`, `$`), the steps' exports and the job's PATH — compared
/// entry by entry with what `labinit shell` gets in the same container.
/// Only what sshd, the client's terminal or the session's shell set differs
/// (SSH_*, MAIL, TERM, PWD, SHLVL, _). Controls: the container's HOME and TERM do not override the
/// session's, labinit's own LABKIT_* do not leak, and a value with a line
/// break (which would inject sshd configuration) is left out with a warning.
#[test]
fn sessions_get_the_jobs_environment() {
    if !have("/usr/sbin/sshd") || !have("/usr/bin/ssh") {
        eprintln!("skipped: needs openssh-server and openssh-client");
        return;
    }
    let keys = common::TempDir::new("ssh-keys");
    keygen(&keys.join("key"));
    let pubkey = std::fs::read_to_string(keys.join("key.pub")).unwrap();
    let key = keys.join("key").display().to_string();
    let services = format!("{}/services", env!("CARGO_MANIFEST_DIR"));
    let env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("HOME", "/root"),
        ("TERM", "dumb"),
        ("CLUSTER_USER", "alice"),
        ("CLUSTER_USER_ID", "123456"),
        ("CLUSTER_GROUP_NAME", "CVLAB-unit"),
        ("CLUSTER_GROUP_ID", "11166"),
        ("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64:/usr/local/cuda/lib64"),
        ("NVIDIA_VISIBLE_DEVICES", "all"),
        ("CUDA_HOME", "/usr/local/cuda"),
        ("ODD", "a  b\t\"c\" \\d 'e' #f $g"),
        ("BROKEN", "x\nPermitRootLogin yes"),
        ("SSH_PORT", PORT),
        ("SSH_PUBLIC_KEY", pubkey.trim()),
        ("LABKIT_SERVICES_DIR", services.as_str()),
        ("LABKIT_STEPS_DIR", "{D}/steps"),
        ("LABKIT_IDLE_TIMEOUT", "0"),
        ("LABKIT_SERVICE_GRACE", "2s"),
    ];
    let mut c = Run::script(&["--net", "--mount"], SCRIPT, &env, |d| {
        private_dirs(d, "");
        std::fs::create_dir_all(d.join("steps")).unwrap();
        let step = d.join("steps/10_conda");
        std::fs::write(&step, "#!/bin/sh\necho CONDA_PREFIX=/opt/conda >> \"$LABKIT_ENV\"\necho PATH=/opt/conda/bin:/usr/bin:/bin >> \"$LABKIT_ENV\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    assert!(c.logged("ssh: Server listening on"), "sshd did not start:\n{}", c.stderr());
    let out = ssh_run(&c, &key, "alice@127.0.0.1", &[], "env -0");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), c.stderr());
    let session = env_entries(&out.stdout);
    // What `kubectl exec … labinit shell -- env -0` gets (the pod's environment).
    let l = common::labinit().display().to_string();
    let exec_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();
    let shell = c.exec(&["-p", "-m"], &[&l, "shell", "--", "env", "-0"], &exec_env).output().unwrap();
    assert!(shell.status.success(), "{}", String::from_utf8_lossy(&shell.stderr));
    let shell = env_entries(&shell.stdout);
    // Set per session by sshd (SSH_*, MAIL), by the client's terminal (TERM)
    // or by the login shell that runs the command (PWD, SHLVL, _).
    let per_session = |e: &String| ["SSH_", "MAIL=", "TERM=", "PWD=", "SHLVL=", "_="].iter().any(|p| e.starts_with(p));

    let only_session: Vec<&String> = session.iter().filter(|e| !shell.contains(*e) && !per_session(e)).collect();
    let only_shell: Vec<&String> =
        shell.iter().filter(|e| !session.contains(*e) && !per_session(e) && !e.starts_with("BROKEN=")).collect();
    assert!(
        only_session.is_empty() && only_shell.is_empty(),
        "only in ssh: {only_session:?}\nonly in labinit shell: {only_shell:?}"
    );
    for want in [
        "PATH=/opt/conda/bin:/usr/bin:/bin",
        "CONDA_PREFIX=/opt/conda",
        "LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/cuda/lib64",
        "NVIDIA_VISIBLE_DEVICES=all",
        "ODD=a  b\t\"c\" \\d 'e' #f $g",
        "HOME=/home/alice",
        "USER=alice",
        "LOGNAME=alice",
    ] {
        assert!(session.contains(want), "{want} missing in the session: {session:?}");
    }
    let leaked = |e: &&String| {
        e.starts_with("TERM=")
            || e.starts_with("BROKEN=")
            || (e.starts_with("LABKIT_") && !e.starts_with("LABKIT_SUPERVISOR="))
    };
    assert_eq!(session.iter().filter(leaked).count(), 0, "{session:?}");
    assert!(c.stderr().contains("ssh: warning: BROKEN is not passed to ssh sessions"), "{}", c.stderr());
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
}

/// sshd's own parser (`sshd -T`, which prints the configuration it read,
/// one `setenv NAME=value` per variable) reads labinit's `SetEnv` file back
/// to exactly the variables given: 400 pseudo-random names and values full
/// of quotes, backslashes, blanks, `#`, `$`, `=` and non-ASCII bytes, plus
/// two with line breaks that must be left out (and be only comments in the
/// file). Negative control: a naive `SetEnv "NAME=value"` without escaping
/// is read back differently, so the comparison can fail. In a private mount
/// namespace with /run a tmpfs (sshd -T wants /run/sshd).
#[test]
fn sshd_reads_the_setenv_file_back_exactly() {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    if !have("/usr/sbin/sshd") {
        eprintln!("skipped: needs openssh-server");
        return;
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet: Vec<&[u8]> = vec![
        b"\"",
        b"\\",
        b"'",
        b" ",
        b"\t",
        b"#",
        b"$",
        b"=",
        b",",
        b"*",
        b"!",
        b"a",
        b"Z",
        b"0",
        b"/",
        b":",
        "é".as_bytes(),
        "中".as_bytes(),
        b"\xff",
        b"\\\"",
        b"\"\\",
    ];
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    for i in 0..400 {
        let name = match i % 10 {
            0 => format!("dotted.name-{i}"),
            _ => format!("V{i}_{}", next() % 1000),
        };
        let len = (next() % 24) as usize;
        let mut value = Vec::new();
        for _ in 0..len {
            value.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        env.push((name.into(), OsString::from_vec(value)));
    }
    let mut with_breaks = env.clone();
    with_breaks.insert(7, ("BROKEN".into(), "x\nPermitRootLogin yes".into()));
    with_breaks.push(("CR".into(), "x\rPort 1".into()));
    let file = labkit::init::sshd::sshd_setenv_file(&with_breaks);

    let dir = common::TempDir::new("sshd-t");
    let hostkey = dir.join("hostkey");
    keygen(&hostkey);
    // What sshd reads, or its error.
    let read_back = |setenv: &[u8]| -> Result<Vec<(OsString, OsString)>, String> {
        let mut conf = format!("HostKey {}\n", hostkey.display()).into_bytes();
        conf.extend_from_slice(setenv);
        std::fs::write(dir.join("sshd_config"), &conf).unwrap();
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec /usr/sbin/sshd -T -f \"$1\"")
            .arg("sh")
            .arg(dir.join("sshd_config"))
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(out
            .stdout
            .split(|b| *b == b'\n')
            .filter_map(|l| l.strip_prefix(b"setenv "))
            .map(|kv| {
                let eq = kv.iter().position(|b| *b == b'=').expect("NAME=value");
                (OsString::from_vec(kv[..eq].to_vec()), OsString::from_vec(kv[eq + 1..].to_vec()))
            })
            .collect())
    };
    assert_eq!(read_back(&file), Ok(env.clone()), "sshd read the SetEnv line differently");
    let text = String::from_utf8_lossy(&file);
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1, "one SetEnv line, the rest comments: {text}");
    assert!(text.contains("# warning: BROKEN is not passed") && text.contains("# warning: CR is not passed"), "{text}");
    // Control: the same variables written without escaping.
    let mut naive = b"SetEnv".to_vec();
    for (k, v) in &env {
        naive.extend_from_slice(b" \"");
        naive.extend_from_slice(k.as_bytes());
        naive.push(b'=');
        naive.extend_from_slice(v.as_bytes());
        naive.push(b'"');
    }
    naive.push(b'\n');
    // (sshd refuses it or reads other variables).
    assert_ne!(read_back(&naive), Ok(env), "control: unescaped quotes must change what sshd reads");
}

/// Without SSH_PUBLIC_KEY the service is not wanted: it exits 0 at once and
/// no sshd runs.
#[test]
fn no_key_no_sshd() {
    let services = format!("{}/services", env!("CARGO_MANIFEST_DIR"));
    let env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("CLUSTER_USER", "alice"),
        ("CLUSTER_USER_ID", "123456"),
        ("CLUSTER_GROUP_NAME", "CVLAB-unit"),
        ("CLUSTER_GROUP_ID", "11166"),
        ("LABKIT_SERVICES_DIR", services.as_str()),
        ("LABKIT_STEPS_DIR", "/nonexistent"),
        ("LABKIT_IDLE_TIMEOUT", "0"),
    ];
    let mut c = Run::script(&["--net", "--mount"], SCRIPT, &env, |d| private_dirs(d, ""));
    assert!(c.logged("service ssh: done (exit code 0)"), "{}", c.stderr());
    assert!(!c.stderr().contains("Server listening"), "{}", c.stderr());
    c.signal(libc::SIGTERM);
    assert_eq!(c.wait(), 0, "{}", c.stderr());
}

const SCRIPT: &str = "set -e
ip link set lo up
mount --bind {D}/etc /etc
mount --bind {D}/home /home
mount --bind {D}/run /run
mount --bind {D}/roothome /root
exec env -u PWD {L} wait";

/// Private /etc (a copy of the host's), /home, /run and /root for the
/// namespace; root's authorized_keys holds `pubkey`.
fn private_dirs(d: &common::TempDir, pubkey: &str) {
    let st = Command::new("cp").arg("-a").arg("/etc").arg(d.join("etc")).status().unwrap();
    assert!(st.success(), "copying /etc");
    for sub in ["home", "run", "roothome/.ssh"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(d.join("roothome/.ssh/authorized_keys"), pubkey).unwrap();
}

/// Run the service script with `sh` (a shell command, e.g. `busybox sh`),
/// SSH_PORT=`port` and a good key; the key writer (`LABKIT_LABINIT`) and
/// sshd are recorders, the key writer fails so the script stops there.
/// Returns the output and whether a recorder was reached.
fn port_check(sh: &[&str], port: &str) -> (String, bool) {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::TempDir::new("ssh-port");
    let mark = dir.join("reached");
    for (name, body) in [("labinit", "cat >/dev/null\nexit 1"), ("sshd", "exit 0")] {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\ntouch {}\n{body}\n", mark.display())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqHd3Hq7S4bXx3fXWm5xg0Qy5sQm8m9p7oQwq4s0Ruk alice@laptop";
    let out = Command::new(sh[0])
        .args(&sh[1..])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/services/ssh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .env("SSH_PUBLIC_KEY", key)
        .env("SSH_PORT", port)
        .env("LABKIT_USER", "alice")
        .env("LABKIT_UID", "123456")
        .env("LABKIT_GID", "11166")
        .env("LABKIT_HOME", dir.join("home"))
        .env("LABKIT_LABINIT", dir.join("labinit"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "a refused port is not a service failure: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, mark.exists())
}

/// SSH_PORT is checked as a string before any arithmetic: a number too big
/// for the shell (`[ -gt ]` fails inside `if`, which reads as "not greater")
/// and every other non-port gets one `error:` line, no key file and no sshd,
/// with dash and busybox sh. Controls: ports 1, 22 and 65535 reach the key
/// writer.
#[test]
fn ssh_port_is_checked_as_a_string_first() {
    let mut shells: Vec<Vec<&str>> = vec![vec!["/bin/sh"]];
    for bb in ["/usr/bin/busybox", "/bin/busybox"] {
        if Path::new(bb).exists() {
            shells.push(vec![bb, "sh"]);
            break;
        }
    }
    let bad = [
        "99999999999999999999",
        "18446744073709551638",
        "65536",
        "100000",
        "022",
        "0",
        "+22",
        "-1",
        " 22",
        "22 ",
        "0x16",
        "2222\nlabinit: error: forged",
    ];
    for sh in &shells {
        for port in bad {
            let (text, reached) = port_check(sh, port);
            assert!(!reached, "{sh:?} SSH_PORT={port:?}: the key writer or sshd was reached:\n{text}");
            assert_eq!(text.lines().filter(|l| l.contains("error: SSH_PORT=")).count(), 1, "{sh:?} {port:?}:\n{text}");
            assert_eq!(text.lines().count(), 1, "{sh:?} {port:?}: one line only:\n{text}");
        }
        for port in ["1", "22", "65535"] {
            let (text, reached) = port_check(sh, port);
            assert!(reached, "control {sh:?} SSH_PORT={port}: a valid port was refused:\n{text}");
        }
    }
}

// ---- Hostile keys and ports (the service script alone) ----

/// Run the repo's ssh service script with `key` and `port`; LABKIT_LABINIT
/// points at a recorder, so any attempt to write the key file leaves a mark.
/// The recorder then fails, so the script stops there (it never reaches the
/// host's /etc/ssh or /run).
fn ssh_service(key: &str, port: &str) -> (String, bool) {
    let dir = common::TempDir::new("ssh-hostile");
    let mark = dir.join("key-writer-called");
    let recorder = dir.join("labinit");
    fs::write(&recorder, format!("#!/bin/sh\ntouch {}\ncat >/dev/null\nexit 1\n", mark.display())).unwrap();
    fs::set_permissions(&recorder, fs::Permissions::from_mode(0o755)).unwrap();
    // A fake sshd that records being started (the real one must never be reached).
    let sshd = dir.join("sshd");
    fs::write(&sshd, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
    fs::set_permissions(&sshd, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("/bin/sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/services/ssh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .env("SSH_PUBLIC_KEY", key)
        .env("SSH_PORT", port)
        .env("LABKIT_USER", "alice")
        .env("LABKIT_UID", "123456")
        .env("LABKIT_GID", "11166")
        .env("LABKIT_HOME", dir.join("home").display().to_string())
        .env("LABKIT_LABINIT", &recorder)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "a refused key is not a service failure: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, mark.exists())
}

const GOOD_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqHd3Hq7S4bXx3fXWm5xg0Qy5sQm8m9p7oQwq4s0Ruk alice@laptop";

#[test]
fn hostile_ssh_keys_and_ports_are_refused_without_writing_anything() {
    let cases: Vec<(String, &str)> = vec![
        (format!("command=\"id\" {GOOD_KEY}"), "22"),
        (format!("environment=\"LD_PRELOAD=/tmp/x.so\" {GOOD_KEY}"), "22"),
        (format!("no-pty,{GOOD_KEY}"), "22"),
        ("ssh-ed25519 AAAA$(touch /tmp/pwned)".into(), "22"),
        ("ssh-ed25519 AAAA`id`".into(), "22"),
        ("ssh-ed25519 AAAA\u{1}".into(), "22"),
        ("ssh-rsa".into(), "22"),
        (format!("{GOOD_KEY}\nfrom=\"*\" {GOOD_KEY}"), "22"),
        ("garbage".into(), "22"),
        (GOOD_KEY.into(), "22; rm -rf /"),
        (GOOD_KEY.into(), "0"),
        (GOOD_KEY.into(), "70000"),
        (GOOD_KEY.into(), "022"),
    ];
    for (key, port) in &cases {
        let (text, touched) = ssh_service(key, port);
        assert!(text.contains("error:"), "{key:?} port {port}: {text}");
        assert_eq!(text.lines().filter(|l| l.contains("error:")).count(), 1, "{text}");
        assert!(!touched, "{key:?} port {port}: the key writer or sshd was reached: {text}");
    }
    // Negative control: a plain key reaches the key writer (which fails here).
    let (text, touched) = ssh_service(GOOD_KEY, "22");
    assert!(touched, "a good key must be written: {text}");
    assert!(text.contains("could not write ~/.ssh/authorized_keys"), "{text}");
}
