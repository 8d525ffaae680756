//! Every conflict rule of `provision::plan`, checked on the resulting text of
//! the account files: a fresh user on each distribution, uids, gids and names
//! taken by other entries, idempotence and convergence, supplementary
//! groups, and system accounts and privileged groups never taken over (in
//! the plan, and through the real binary before anything is written or run).

mod common;
#[path = "accounts/support.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use labkit::init::accounts::{Database, Kind, Table};
use labkit::init::provision::{self, Limits, Request};

use support::*;

#[test]
fn fresh_user_on_each_distro() {
    for distro in common::DISTROS {
        let db = load(distro);
        let plan = plan_ok(&db, &alice());
        let pw = text(&plan.db.passwd);
        let shadow_field = if db.shadow.is_some() { "x" } else { "*" };
        let line = format!("alice:{shadow_field}:123456:11166::/home/alice:/bin/bash\n");
        if distro == "quirks" {
            // NIS compat lines stay last, as shadow-utils keeps them.
            assert!(pw.contains(&format!("\n{line}+@netgroup::::::\n")), "{distro}: {pw}");
        } else {
            assert!(pw.ends_with(&line), "{distro}: {pw}");
        }
        let group = text(&plan.db.group);
        if distro == "quirks" {
            assert!(group.contains("\n# comment\nCVLAB-unit:x:11166:\n+:::\n"), "{distro}: {group}");
        } else {
            assert!(group.ends_with("CVLAB-unit:x:11166:\n"), "{distro}: {group}");
        }
        if let Some(sh) = &plan.db.shadow {
            assert!(text(sh).ends_with("alice:*:20000:0:99999:7:::\n"), "{distro}");
        }
        if let Some(gs) = &plan.db.gshadow {
            assert!(text(gs).ends_with("CVLAB-unit:!::\n"), "{distro}");
        }
        assert!(warnings(&plan.notes).is_empty(), "{distro}: {:?}", plan.notes);
        assert_untouched_lines_kept(&db.passwd, &plan.db.passwd, &[]);
        assert_untouched_lines_kept(&db.group, &plan.db.group, &[]);
        assert_no_duplicates(&plan.db);
    }
}

#[test]
fn uid_taken_by_ubuntu_is_renamed_in_place() {
    let db = load("ubuntu-24.04");
    let plan = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    let pw = text(&plan.db.passwd);
    assert!(pw.contains("\nalice:x:1000:11166:Ubuntu:/home/alice:/bin/bash\n"), "{pw}");
    assert!(!pw.contains("ubuntu:"), "{pw}");
    let sh = text(plan.db.shadow.as_ref().unwrap());
    assert!(sh.contains("\nalice:*:20000:0:99999:7:::\n") && !sh.contains("ubuntu:"), "{sh}");
    // The ubuntu *group* is another entry and stays.
    assert!(text(&plan.db.group).contains("\nubuntu:x:1000:\n"));
    let w = warnings(&plan.notes);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("uid 1000 belonged to 'ubuntu'") && w[0].contains("/home/ubuntu is left alone"), "{}", w[0]);
    assert_untouched_lines_kept(&db.passwd, &plan.db.passwd, &["ubuntu"]);
    assert_no_duplicates(&plan.db);
}

#[test]
fn renamed_user_keeps_its_group_memberships() {
    let mut db = load("ubuntu-24.04");
    let g = text(&db.group).replace("\nadm:x:4:\n", "\nadm:x:4:syslog,ubuntu\n");
    db.group = Table::parse(Kind::Group, g.as_bytes());
    let gs = text(db.gshadow.as_ref().unwrap()).replace("\nadm:*::\n", "\nadm:*:ubuntu:syslog,ubuntu\n");
    db.gshadow = Some(Table::parse(Kind::Gshadow, gs.as_bytes()));
    assert!(text(&db.group).contains("syslog,ubuntu"), "fixture edit took effect");
    let plan = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    assert!(text(&plan.db.group).contains("\nadm:x:4:syslog,alice\n"));
    assert!(text(plan.db.gshadow.as_ref().unwrap()).contains("\nadm:*:alice:syslog,alice\n"));
}

#[test]
fn gid_taken_by_users_becomes_the_primary_group() {
    let db = load("debian-12");
    let plan = plan_ok(&db, &req("alice", 123456, "CVLAB-unit", 100));
    assert_eq!(plan.group_name, "users");
    assert!(!text(&plan.db.group).contains("CVLAB-unit"), "no duplicate gid 100 group");
    assert!(text(&plan.db.passwd).ends_with("alice:x:123456:100::/home/alice:/bin/bash\n"));
    let w = warnings(&plan.notes);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("gid 100 already belongs to group 'users'"), "{}", w[0]);
    assert_no_duplicates(&plan.db);
}

#[test]
fn existing_name_with_another_uid_gets_the_cluster_uid() {
    // docker-stacks: jovyan is 1000:100.
    let db = load("docker-stacks");
    let plan = plan_ok(&db, &req("jovyan", 123456, "CVLAB-unit", 11166));
    let pw = text(&plan.db.passwd);
    assert!(pw.contains("\njovyan:x:123456:11166::/home/jovyan:/bin/bash\n"), "{pw}");
    assert!(!pw.contains(":1000:"), "old uid gone: {pw}");
    let w = warnings(&plan.notes);
    assert!(w.iter().any(|m| m.contains("user 'jovyan' existed with uid 1000; changed it to 123456")), "{w:?}");
    // jovyan stays a member of users (gid 100) through the member list.
    assert!(text(&plan.db.group).contains("\nusers:x:100:jovyan\n"));
    assert_no_duplicates(&plan.db);
}

#[test]
fn existing_group_name_with_another_gid_is_renumbered_and_users_follow() {
    let mut db = load("debian-12");
    db.group = Table::parse(Kind::Group, (text(&db.group) + "CVLAB-unit:x:1500:\n").as_bytes());
    db.passwd = Table::parse(Kind::Passwd, (text(&db.passwd) + "bob:x:2000:1500::/home/bob:/bin/sh\n").as_bytes());
    let plan = plan_ok(&db, &alice());
    let g = text(&plan.db.group);
    assert!(g.ends_with("CVLAB-unit:x:11166:\n") && !g.contains(":1500:"), "{g}");
    let pw = text(&plan.db.passwd);
    assert!(pw.contains("\nbob:x:2000:11166::/home/bob:/bin/sh\n"), "bob follows: {pw}");
    let w = warnings(&plan.notes);
    assert!(
        w.iter().any(|m| m.contains("group 'CVLAB-unit' had gid 1500; changed it to 11166") && m.contains("bob")),
        "{w:?}"
    );
    assert_no_duplicates(&plan.db);
}

#[test]
fn name_and_uid_on_two_entries_resolve_deterministically() {
    let mut db = load("debian-12");
    db.passwd = Table::parse(
        Kind::Passwd,
        (text(&db.passwd) + "alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:123456:1000::/home/bob:/bin/sh\n")
            .as_bytes(),
    );
    db.shadow = Some(Table::parse(
        Kind::Shadow,
        (text(db.shadow.as_ref().unwrap()) + "alice:!:1:0:99999:7:::\nbob:$6$x:1:0:99999:7:::\n").as_bytes(),
    ));
    let first = plan_ok(&db, &alice());
    let again = plan_ok(&db, &alice());
    assert_eq!(first.db, again.db, "same input, same output");
    let pw = text(&first.db.passwd);
    assert_eq!(lines_named(&pw, "alice"), 1, "{pw}");
    assert!(pw.ends_with("alice:x:123456:11166::/home/alice:/bin/bash\n"), "the uid's entry is renamed: {pw}");
    assert!(!pw.contains("bob:") && !pw.contains(":1000:1000:"), "{pw}");
    let sh = text(first.db.shadow.as_ref().unwrap());
    assert_eq!(lines_named(&sh, "alice"), 1, "{sh}");
    assert!(!sh.contains("bob:") && !sh.contains("$6$x"), "bob's password is not inherited: {sh}");
    assert_eq!(warnings(&first.notes).len(), 2, "{:?}", first.notes);
    assert_no_duplicates(&first.db);
}

#[test]
fn planning_is_idempotent_on_every_distro_and_conflict() {
    let cases = [
        ("ubuntu-24.04", req("alice", 1000, "CVLAB-unit", 11166)),
        ("debian-12", req("alice", 123456, "CVLAB-unit", 100)),
        ("docker-stacks", req("jovyan", 123456, "CVLAB-unit", 11166)),
        ("alpine-3", alice()),
        ("fedora-40", alice()),
        ("quirks", alice()),
    ];
    for (distro, r) in cases {
        let first = plan_ok(&load(distro), &r);
        let second = plan_ok(&first.db, &r);
        assert_eq!(first.db, second.db, "{distro}");
        assert!(warnings(&second.notes).iter().all(|w| w.contains("already belongs")), "{distro}: {:?}", second.notes);
    }
}

#[test]
fn manual_edit_converges_back() {
    let first = plan_ok(&load("debian-12"), &alice()).db;
    let mut edited = first.clone();
    let pw = text(&edited.passwd)
        .replace("alice:x:123456:11166::/home/alice:/bin/bash", "alice:x:123456:0::/root:/bin/false");
    edited.passwd = Table::parse(Kind::Passwd, pw.as_bytes());
    assert_ne!(edited, first);
    assert_eq!(plan_ok(&edited, &alice()).db, first);
}

#[test]
fn no_supplementary_groups_unless_asked() {
    let plan = plan_ok(&load("debian-12"), &alice());
    assert!(plan.db.group.groups_listing("alice").is_empty());
    let mut r = alice();
    r.extra_groups = vec!["sudo".into(), "adm".into(), "root".into(), "nosuch".into()];
    let plan = plan_ok(&load("debian-12"), &r);
    let mut g = plan.db.group.groups_listing("alice");
    g.sort();
    assert_eq!(g, vec![0, 4, 27]);
    assert!(warnings(&plan.notes).iter().any(|w| w.contains("'nosuch'")));
}

#[test]
fn supplementary_list_keeps_runtime_groups_but_not_roots() {
    // Alpine: root is a member of bin, daemon, sys, adm, disk, wheel...
    let db = plan_ok(&load("alpine-3"), &alice()).db;
    let roots_disk = 6;
    let g = provision::supplementary_groups(&db, "alice", 11166, &[0, 1, roots_disk, 555, 11166]);
    assert_eq!(g, vec![11166, 555]);
}

#[test]
fn alpine_without_shadow_gets_a_locked_passwd_field() {
    let plan = plan_ok(&load("alpine-3"), &alice());
    assert!(plan.db.shadow.is_none() && plan.db.gshadow.is_none());
    assert!(text(&plan.db.passwd).contains("alice:*:123456:"));
}

#[test]
fn duplicate_stale_names_all_go_so_the_name_resolves_to_the_uid() {
    // Found by the provision fuzz target: two stale entries named alice.
    let db = Database {
        passwd: Table::parse(
            Kind::Passwd,
            b"alice:x:1005:5::/h:/bin/sh\nalice:x:1006:6::/h:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        ),
        group: Table::parse(Kind::Group, b"alice:x:1000:\n"),
        shadow: None,
        gshadow: None,
    };
    let r = req("alice", 1000, "alice", 1000);
    let p = plan_ok(&db, &r);
    assert_eq!(p.db.passwd.find_name("alice"), p.db.passwd.find_id(1000));
    assert_eq!(plan_ok(&p.db, &r).db, p.db, "a second start changes nothing");
}

// ---- System accounts are never taken over (issue 11 §1) ----

#[test]
fn system_accounts_and_privileged_groups_are_refused() {
    let db = load("ubuntu-24.04");
    let cases: Vec<(Request, &str)> = vec![
        // nobody would be renumbered to the cluster uid and get sudo.
        (req("nobody", 123456, "CVLAB-unit", 11166), "system account 'nobody' (uid 65534)"),
        // daemon would be renamed.
        (req("alice", 1, "CVLAB-unit", 11166), "system account 'daemon' (uid 1)"),
        // daemon, exactly: it would get a new home, shell and sudo.
        (req("daemon", 1, "CVLAB-unit", 11166), "system account 'daemon' (uid 1)"),
        // The stale 'daemon' entry would be removed while ubuntu is renamed.
        (req("daemon", 1000, "CVLAB-unit", 11166), "system account 'daemon' (uid 1)"),
        (req("_apt", 123456, "CVLAB-unit", 11166), "system account '_apt'"),
        // Groups: renumbering sudo or nogroup (nobody would follow).
        (req("alice", 123456, "sudo", 11166), "system group 'sudo' (gid 27)"),
        (req("alice", 123456, "nogroup", 11166), "system group 'nogroup' (gid 65534)"),
        (req("alice", 123456, "users", 11166), "system group 'users' (gid 100)"),
        // Privileged groups as the primary group.
        (req("alice", 123456, "CVLAB-unit", 42), "privileged group 'shadow'"),
        (req("alice", 123456, "CVLAB-unit", 27), "privileged group 'sudo'"),
        (req("alice", 123456, "CVLAB-unit", 4), "privileged group 'adm'"),
        (req("alice", 123456, "CVLAB-unit", 6), "privileged group 'disk'"),
        (req("alice", 123456, "sudo", 27), "privileged group 'sudo'"),
    ];
    for (r, want) in cases {
        let msg = refusal(&db, &r);
        assert!(msg.contains(want), "{}/{}/{}/{}: {msg}", r.user, r.uid, r.group, r.gid);
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    // gid 0 under any name, and a privileged name above GID_MIN.
    let mut db2 = db.clone();
    db2.group = Table::parse(Kind::Group, (text(&db.group) + "docker:x:1001:\n").as_bytes());
    assert!(refusal(&db2, &req("alice", 123456, "CVLAB-unit", 1001)).contains("privileged group 'docker'"));
    assert!(refusal(&db2, &req("alice", 123456, "docker", 11166)).contains("privileged group 'docker'"));
    assert!(refusal(&db2, &req("alice", 123456, "root", 0)).contains("privileged group 'root'"));
}

#[test]
fn regular_accounts_and_harmless_groups_keep_working() {
    // Negative controls of the refusals: Ubuntu's regular `ubuntu` at 1000 is
    // renamed, `users` (100) may be the primary group, a fresh uid below
    // UID_MIN that nobody holds is created.
    let db = load("ubuntu-24.04");
    let p = plan_ok(&db, &req("alice", 1000, "CVLAB-unit", 11166));
    assert_eq!(p.db.passwd.find_id(1000).map(|i| p.db.passwd.field(i, 0)), Some("alice".into()));
    assert_eq!(plan_ok(&db, &req("alice", 123456, "CVLAB-unit", 100)).group_name, "users");
    assert_eq!(plan_ok(&db, &req("alice", 123456, "users", 100)).group_name, "users");
    let p = plan_ok(&db, &req("alice", 500, "CVLAB-unit", 11166));
    assert!(text(&p.db.passwd).ends_with("alice:x:500:11166::/home/alice:/bin/bash\n"));
    // The ubuntu *group* (1000) is regular: renumbering it moves its members.
    let p = plan_ok(&db, &req("alice", 123456, "ubuntu", 11166));
    assert!(text(&p.db.passwd).contains("\nubuntu:x:1000:11166:"));
}

#[test]
fn the_system_range_comes_from_login_defs() {
    let (l, notes) = Limits::from_login_defs("# c\nUID_MIN\t\t 500\nGID_MIN 600\nUID_MAX 60000\n");
    assert_eq!((l.uid_min, l.gid_min), (500, 600));
    assert!(notes.is_empty());
    let (l, notes) = Limits::from_login_defs("UID_MIN 0x3e8\n#GID_MIN 5\n");
    assert_eq!((l.uid_min, l.gid_min), (1000, 1000), "bad and commented values keep the default");
    assert_eq!(notes.len(), 1);
    assert_eq!(Limits::from_login_defs("").0, Limits::default());
    // An account at 700 is regular with UID_MIN 500 (old Red Hat) and a
    // system account with the default.
    let mut db = load("debian-12");
    db.passwd =
        Table::parse(Kind::Passwd, (text(&db.passwd) + "olduser:x:700:700::/home/olduser:/bin/sh\n").as_bytes());
    let mut r = req("alice", 700, "CVLAB-unit", 11166);
    assert!(refusal(&db, &r).contains("'olduser' (uid 700)"));
    r.limits = Limits { uid_min: 500, gid_min: 500 };
    assert!(text(&plan_ok(&db, &r).db.passwd).contains("\nalice:x:700:11166:"));
}

#[test]
fn a_later_duplicate_of_the_users_own_entry_is_not_a_takeover() {
    // alice at her uid comes first; a later line with the name at a system
    // uid is never reached by a lookup and nothing edits it: no refusal.
    let mut db = load("debian-12");
    db.passwd = Table::parse(
        Kind::Passwd,
        (text(&db.passwd) + "alice:x:123456:11166::/home/alice:/bin/bash\nalice:x:5:5::/:/bin/sh\n").as_bytes(),
    );
    let p = plan_ok(&db, &alice());
    assert!(text(&p.db.passwd).ends_with("alice:x:5:5::/:/bin/sh\n"));
    // Negative control: when that system line is the first with the name,
    // the request would renumber it, and is refused.
    let mut db = load("debian-12");
    db.passwd = Table::parse(Kind::Passwd, (text(&db.passwd) + "alice:x:5:5::/:/bin/sh\n").as_bytes());
    assert!(refusal(&db, &alice()).contains("system account 'alice' (uid 5)"));
}

#[test]
fn a_new_account_at_a_free_low_uid_is_created_and_kept_on_restart() {
    // Found by the provision fuzz target: uid 1 free (no daemon), so the
    // account is new; the next start must not mistake it for a system one.
    let mut db = load("debian-12");
    db.passwd = Table::parse(Kind::Passwd, b"root:x:0:0:root:/root:/bin/bash\n");
    let r = req("jovyan", 1, "CVLAB-unit", 11166);
    let first = plan_ok(&db, &r);
    let second = plan_ok(&first.db, &r);
    assert_eq!(second.db, first.db);
    // Negative control: the image's own daemon at uid 1 (another home and
    // shell) is refused.
    let db = load("debian-12");
    assert!(refusal(&db, &req("daemon", 1, "CVLAB-unit", 11166)).contains("system account 'daemon'"));
}

// ---- Through the real binary: refused before anything is written or run ----

/// Run `labinit run --root ROOT -- touch MARKER` with `env`.
fn run_touch(root: &common::TempDir, env: &[(String, String)], marker: &std::path::Path) -> std::process::Output {
    Command::new(common::labinit())
        .args(["run", "--root"])
        .arg(root.path())
        .args(["--", "/usr/bin/touch"])
        .arg(marker)
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

#[test]
fn system_accounts_are_never_taken_over_and_nothing_is_written() {
    // Issue 11 §1: nobody renumbered and given sudo, daemon renamed, sudo or
    // nogroup renumbered, shadow/sudo as the primary group.
    let root = common::fixture_root("ubuntu-24.04");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
    fs::create_dir(root.join("out")).unwrap();
    fs::set_permissions(root.join("out"), fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = root.join("out/job-ran");
    let before = common::snapshot(&root.join("etc"));
    let cases = [
        (common::cluster_env("nobody", "123456", "CVLAB-unit", "11166"), "'nobody' (uid 65534)"),
        (common::cluster_env("alice", "1", "CVLAB-unit", "11166"), "'daemon' (uid 1)"),
        (common::cluster_env("daemon", "1", "CVLAB-unit", "11166"), "'daemon' (uid 1)"),
        (common::cluster_env("_apt", "123456", "CVLAB-unit", "11166"), "'_apt' (uid 42)"),
        (common::cluster_env("alice", "123456", "sudo", "11166"), "group 'sudo' (gid 27)"),
        (common::cluster_env("alice", "123456", "nogroup", "11166"), "group 'nogroup' (gid 65534)"),
        (common::cluster_env("alice", "123456", "CVLAB-unit", "42"), "privileged group 'shadow'"),
        (common::cluster_env("alice", "123456", "CVLAB-unit", "27"), "privileged group 'sudo'"),
    ];
    for (env, want) in &cases {
        let out = run_touch(&root, env, &marker);
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{:?}", &env[1..]);
        assert_eq!(out.status.code(), Some(125), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line only: {err}");
        assert!(err.starts_with("labinit: error: ") && err.contains(want), "{what}: {err}");
        assert!(!marker.exists(), "{what}: the job ran");
        assert_eq!(common::snapshot(&root.join("etc")), before, "{what}: /etc changed");
    }
    // Negative control: Ubuntu's regular `ubuntu` at 1000 is renamed, the job
    // runs, and sudo is granted.
    let out = run_touch(&root, &common::cluster_env("alice", "1000", "CVLAB-unit", "11166"), &marker);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(marker.exists());
    assert!(fs::read_to_string(root.join("etc/passwd")).unwrap().contains("\nalice:x:1000:11166:"));
    assert!(fs::read_to_string(root.join("etc/sudoers.d/labkit")).unwrap().contains("#1000 ALL="));
}

/// Review r14 (pre-existing, also at f595477): a privileged group *name*
/// the image lacks (wheel, docker, admin on Debian) was created as the
/// user's primary group on the first start, and every later start of the
/// same container then refused it: a start must not succeed once and fail
/// the next time. Such a name is now refused at once (sudo rules such as
/// `%admin` go by name), before anything is written. Control: a harmless
/// name the image lacks is created, and the second start accepts it and
/// changes nothing.
#[test]
fn a_privileged_group_name_the_image_lacks_is_refused_at_once() {
    let db = load("debian-12");
    for group in ["wheel", "docker", "admin"] {
        assert!(db.group.find_name(group).is_none(), "{group}: the fixture has it; pick a name it lacks");
        let e = provision::plan(&db, &req("alice", 123456, group, 11166)).map(|_| ()).unwrap_err();
        assert!(e.0.contains(&format!("CLUSTER_GROUP_NAME={group} is the name of a privileged group")), "{}", e.0);
    }
    let r = req("alice", 123456, "CVLAB-unit", 11166);
    let first = provision::plan(&db, &r).expect("a harmless new group is created");
    let again = provision::plan(&first.db, &r).expect("and accepted on the next start");
    assert_eq!(again.db, first.db, "the second start changed the files");
}
