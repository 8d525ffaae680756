//! The ssh service (`services/ssh`) with a real sshd: labinit is PID 1 of
//! fresh PID, mount and network namespaces, with private copies of /etc and
//! private /home, /run and /root bind-mounted over the host's (whole
//! directories, never single files), so the account, host keys and sshd
//! files never touch the host. `ssh -i KEY -p PORT alice@127.0.0.1 id` on the
//! namespace's loopback shows the cluster uid; root login and password login
//! are refused. Controls: an unknown key is refused by the same server, and
//! without SSH_PUBLIC_KEY the service exits 0 at once (no sshd).

mod common;
#[path = "common/ns.rs"]
mod ns;

use std::path::Path;
use std::process::{Command, Output};

use nix::libc;
use ns::Ns;

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

fn ssh(c: &Ns, key: &str, who: &str, extra: &[&str]) -> Output {
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
    argv.push("id");
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
    let mut c = Ns::start(&["--net", "--mount"], SCRIPT, &env, |d| private_dirs(d, &pubkey));
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
    let mut c = Ns::start(&["--net", "--mount"], SCRIPT, &env, |d| private_dirs(d, ""));
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
