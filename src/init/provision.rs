//! Deciding what the account files must become: the conflict rules between
//! the requested user/group and what the image already has. Pure code: takes
//! a parsed [`Database`] and a [`Request`], returns the new database and one
//! note per decision, or a [`Refusal`] (one line; the start ends with exit
//! 125 and nothing is written). Writing is `files`' job.
//!
//! Numeric ids are authoritative (they are what reaches the NFS server), and
//! no duplicate id is ever created:
//! - gid taken by another group name: that group becomes the primary group.
//! - group name taken with another gid: its gid changes; users whose primary
//!   gid pointed at the old one follow.
//! - uid taken by another user name: that entry is renamed in place (shadow
//!   line and group member lists follow; its old home is left alone).
//! - user name taken with another uid: its uid changes.
//! - name and uid on two different entries: the entry holding the uid is
//!   renamed to the user; the stale entry holding only the name is removed
//!   (with its shadow line), since two entries cannot share a name.
//!
//! System accounts are never taken over. An account or group of the *system
//! range* — an id below the image's `UID_MIN`/`GID_MIN` (`/etc/login.defs`,
//! default 1000, as shadow-utils' `useradd` uses them), the overflow id 65534
//! (`nobody`/`nogroup`), or the ids `(uid_t)-1`/`-2` — is never renamed,
//! renumbered, removed, turned into the cluster user or given sudo; and a
//! [privileged group](PRIVILEGED_GROUPS) never becomes the user's primary
//! group. A harmless existing group of the system range (`users`, 100) may
//! be the primary group, with a warning, as before.
//!
//! A shadow line is only ever edited by name: the user's own, or the one of
//! the entry being renamed. A shadow line named after no account is left
//! alone, unless it carries the requested name (then it is replaced: its
//! password was nobody's to inherit).

use crate::init::accounts::{Database, Table};

/// The system range of an image: ids below these are system accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `UID_MIN` of `/etc/login.defs` (default 1000).
    pub uid_min: u32,
    /// `GID_MIN` of `/etc/login.defs` (default 1000).
    pub gid_min: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { uid_min: 1000, gid_min: 1000 }
    }
}

/// The overflow id (`nobody`, `nogroup`).
const OVERFLOW_ID: u32 = 65534;

impl Limits {
    /// Read `UID_MIN` and `GID_MIN` from the text of `/etc/login.defs`
    /// (`NAME value` lines, `#` comments; the last setting wins as in
    /// shadow-utils). A value that is not a plain decimal number keeps the
    /// default and is reported in the returned notes.
    pub fn from_login_defs(text: &str) -> (Limits, Vec<Note>) {
        let mut limits = Limits::default();
        let mut notes = Vec::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next()) else { continue };
            let slot = match key {
                "UID_MIN" => &mut limits.uid_min,
                "GID_MIN" => &mut limits.gid_min,
                _ => continue,
            };
            match value.parse::<u32>() {
                Ok(v) if v > 0 => *slot = v,
                _ => notes.push(Note::Warn(format!(
                    "/etc/login.defs: {key} {value:?} is not a positive decimal number; using {} (the default)",
                    *slot
                ))),
            }
        }
        (limits, notes)
    }

    fn is_system_uid(&self, uid: u32) -> bool {
        uid < self.uid_min || uid == OVERFLOW_ID || uid >= u32::MAX - 1
    }

    fn is_system_gid(&self, gid: u32) -> bool {
        gid < self.gid_min || gid == OVERFLOW_ID || gid >= u32::MAX - 1
    }
}

/// Groups that must never be a user's primary group (besides gid 0, any
/// name): membership gives root or reads secrets — root's files (`root`),
/// password hashes (`shadow`, `auth`), sudo in distribution sudoers
/// (`sudo`, `wheel`, `admin`), logs (`adm`, `systemd-journal`), raw disks
/// and memory (`disk`, `kmem`, `mem`), container and VM daemons (`docker`,
/// `podman`, `lxd`, `libvirt`, `kvm`), Debian's `staff` (writes
/// `/usr/local`, which is in root's PATH), `sys`, and terminals and login
/// records (`tty`, `utmp`).
const PRIVILEGED_GROUPS: &[&str] = &[
    "root",
    "shadow",
    "auth",
    "sudo",
    "wheel",
    "admin",
    "adm",
    "systemd-journal",
    "disk",
    "kmem",
    "mem",
    "docker",
    "podman",
    "lxd",
    "libvirt",
    "kvm",
    "staff",
    "sys",
    "tty",
    "utmp",
];

fn is_privileged_group(name: &str, gid: Option<u32>) -> bool {
    gid == Some(0) || PRIVILEGED_GROUPS.contains(&name)
}

/// One decision, logged by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    Warn(String),
}

/// Why the request cannot be honoured without taking over a system account or
/// leaving the files ambiguous: one line for the log; the start ends with exit
/// 125 and nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The account that was asked for, already validated.
#[derive(Debug, Clone)]
pub struct Request {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
    /// Home path inside the container (`/home/<user>`).
    pub home: String,
    /// Login shell, already chosen from what the image has.
    pub shell: String,
    /// Groups the user joins as a member (opt-in, e.g. the legacy `sudo,adm,root`).
    pub extra_groups: Vec<String>,
    /// Days since the epoch, for the shadow `lastchg` field.
    pub today: u64,
    /// The image's system range.
    pub limits: Limits,
}

/// The result of planning.
#[derive(Debug, Clone)]
pub struct Plan {
    pub db: Database,
    /// Name of the primary group actually used (may differ from the request
    /// when the gid already had a name).
    pub group_name: String,
    pub notes: Vec<Note>,
}

// Column numbers, named for readability.
const NAME: usize = 0;
const PASSWD: usize = 1;
const ID: usize = 2;
const PW_GID: usize = 3;
const PW_HOME: usize = 5;
const PW_SHELL: usize = 6;
const GR_MEMBERS: usize = 3;
const GS_ADMINS: usize = 2;
const GS_MEMBERS: usize = 3;
const SH_LASTCHG: usize = 2;

fn range_text(what: &str, min: u32) -> String {
    format!("{what} below {min} (/etc/login.defs, default 1000) or 65534")
}

/// Compute the database that holds exactly the requested account, or refuse.
pub fn plan(db: &Database, req: &Request) -> Result<Plan, Refusal> {
    let mut new = db.clone();
    let mut notes = Vec::new();
    let group_name = plan_group(&mut new, req, &mut notes)?;
    plan_user(&mut new, req, &mut notes)?;
    plan_memberships(&mut new, req, &mut notes);
    verify(db, &new, req, &group_name)?;
    Ok(Plan { db: new, group_name, notes })
}

fn plan_group(db: &mut Database, req: &Request, notes: &mut Vec<Note>) -> Result<String, Refusal> {
    let by_gid = db.group.find_id(req.gid);
    let by_name = db.group.find_name(&req.group);
    if let Some(i) = by_gid {
        let holder = db.group.field(i, NAME);
        if is_privileged_group(&holder, Some(req.gid)) {
            return Err(Refusal(format!(
                "CLUSTER_GROUP_ID={} is the gid of the privileged group '{holder}'; labinit never makes a privileged group (gid 0, {}) a user's primary group: set CLUSTER_GROUP_ID to your cluster group's gid",
                req.gid,
                PRIVILEGED_GROUPS[1..].join(", ")
            )));
        }
    }
    let name = match (by_gid, by_name) {
        (Some(i), Some(j)) if i == j => req.group.clone(),
        (Some(i), other) => {
            let holder = db.group.field(i, NAME);
            notes.push(Note::Warn(format!(
                "gid {} already belongs to group '{holder}'; using '{holder}' as the primary group instead of creating '{}' (a duplicate gid would make names ambiguous)",
                req.gid, req.group
            )));
            if let Some(j) = other {
                notes.push(Note::Info(format!("group '{}' keeps its gid {}", req.group, db.group.field(j, ID))));
            }
            holder
        }
        (None, Some(j)) => {
            let old = db.group.id_at(j, ID);
            let system = old.is_none_or(|g| req.limits.is_system_gid(g));
            if system || is_privileged_group(&req.group, old) {
                let old = old.map_or_else(|| "?".to_owned(), |g| g.to_string());
                return Err(Refusal(format!(
                    "CLUSTER_GROUP_NAME={} names the {} group '{}' (gid {old}); labinit never renumbers system groups ({}) or privileged ones: choose a group name the image does not have",
                    req.group,
                    if system { "system" } else { "privileged" },
                    req.group,
                    range_text("gid", req.limits.gid_min)
                )));
            }
            db.group.set_field(j, ID, &req.gid.to_string());
            let mut moved = Vec::new();
            if let Some(old) = old {
                for u in db.passwd.all_with_id(PW_GID, old) {
                    moved.push(db.passwd.field(u, NAME));
                    db.passwd.set_field(u, PW_GID, &req.gid.to_string());
                }
            }
            let old = old.map_or_else(|| "?".to_owned(), |g| g.to_string());
            let follow = if moved.is_empty() {
                String::new()
            } else {
                format!("; primary group of {} follows", moved.join(", "))
            };
            notes.push(Note::Warn(format!(
                "group '{}' had gid {old}; changed it to {} (CLUSTER_GROUP_ID){follow}",
                req.group, req.gid
            )));
            req.group.clone()
        }
        (None, None) if PRIVILEGED_GROUPS.contains(&req.group.as_str()) => {
            // Not in the image, yet the name still grants: sudoers rules
            // such as Ubuntu's `%admin` or a `%wheel` go by name, and the
            // next start would find it a privileged group it must refuse.
            return Err(Refusal(format!(
                "CLUSTER_GROUP_NAME={} is the name of a privileged group ({}); labinit never makes one a user's primary group, even where the image lacks it (sudo rules such as %admin and %wheel go by name): set CLUSTER_GROUP_NAME to your cluster group's name",
                req.group,
                PRIVILEGED_GROUPS[1..].join(", ")
            )));
        }
        (None, None) => {
            db.group.push(&[&req.group, "x", &req.gid.to_string(), ""]);
            notes.push(Note::Info(format!("created group '{}' (gid {})", req.group, req.gid)));
            req.group.clone()
        }
    };
    if let Some(gs) = db.gshadow.as_mut() {
        if gs.find_name(&name).is_none() {
            gs.push(&[&name, "!", "", ""]);
        }
    }
    Ok(name)
}

fn new_shadow_line(shadow: &mut Table, user: &str, today: u64) {
    // `*`: no password can match, yet the account is not "locked" (OpenSSH
    // refuses public keys for a hash starting with `!` when UsePAM is off), and
    // lastchg = today so su never demands a password change.
    shadow.push(&[user, "*", &today.to_string(), "0", "99999", "7", "", "", ""]);
}

/// Refuse when the entry at `idx` is a system account.
fn refuse_system_user(db: &Database, req: &Request, idx: usize, what: &str) -> Result<(), Refusal> {
    let uid = db.passwd.id_at(idx, ID);
    if uid.is_some_and(|u| !req.limits.is_system_uid(u)) {
        return Ok(());
    }
    let name = db.passwd.field(idx, NAME);
    let uid = uid.map_or_else(|| "?".to_owned(), |u| u.to_string());
    Err(Refusal(format!(
        "{what} the system account '{name}' (uid {uid}); labinit never renames, renumbers, removes or gives sudo to a system account ({}): set CLUSTER_USER and CLUSTER_USER_ID to your cluster account",
        range_text("uid", req.limits.uid_min)
    )))
}

fn plan_user(db: &mut Database, req: &Request, notes: &mut Vec<Note>) -> Result<(), Refusal> {
    let uid = req.uid.to_string();
    let by_uid = db.passwd.find_id(req.uid);
    let by_name = db.passwd.find_name(&req.user);
    // Every entry the plan would rename, renumber or remove, or turn into
    // the cluster user, must be a regular account.
    // An exact match that already is what this plan writes (a new account
    // an earlier start created at a uid nobody held) is the user's own, even
    // in the system range: planning again must change nothing.
    let own = |i: usize| {
        db.passwd.id_at(i, PW_GID) == Some(req.gid)
            && db.passwd.field(i, PW_HOME) == req.home
            && db.passwd.field(i, PW_SHELL) == req.shell
    };
    if let Some(i) = by_uid.filter(|&i| !(by_name == Some(i) && own(i))) {
        let what = if by_name == Some(i) {
            format!("CLUSTER_USER={} with CLUSTER_USER_ID={} is", req.user, req.uid)
        } else {
            format!("CLUSTER_USER_ID={} belongs to", req.uid)
        };
        refuse_system_user(db, req, i, &what)?;
    }
    match (by_uid, by_name) {
        // The rename removes every entry holding the name with another uid.
        (Some(i), Some(j)) if i != j => {
            for k in db.passwd.entries_named(&req.user) {
                if db.passwd.id_at(k, ID) != Some(req.uid) {
                    refuse_system_user(db, req, k, &format!("CLUSTER_USER={} names", req.user))?;
                }
            }
        }
        // The first entry holding the name is renumbered.
        (None, Some(j)) => refuse_system_user(db, req, j, &format!("CLUSTER_USER={} names", req.user))?,
        _ => {}
    }
    let idx = match (by_uid, by_name) {
        (Some(i), Some(j)) if i == j => i,
        (Some(i), by_name) => {
            let old = db.passwd.field(i, NAME);
            let old_home = db.passwd.field(i, PW_HOME);
            if by_name.is_some() {
                // Every entry holding the name with another uid goes (an
                // image can carry the same name twice; first match wins in
                // libc, so one left over would still shadow ours), up to the
                // first that holds the uid.
                for j in db.passwd.entries_named(&req.user) {
                    if db.passwd.id_at(j, ID) == Some(req.uid) {
                        break;
                    }
                    let stale_uid = db.passwd.field(j, ID);
                    notes.push(Note::Warn(format!(
                        "user '{}' existed with uid {stale_uid} while uid {} belonged to '{old}'; removed the stale '{}' entry (uid {stale_uid}) so the name is unique",
                        req.user, req.uid, req.user
                    )));
                    db.passwd.remove(j);
                }
            }
            // Shadow lines named like the user belong to no account that
            // stays (the stale entry, or none): their password is nobody's to
            // inherit, and the first would shadow the renamed line.
            if let Some(sh) = db.shadow.as_mut() {
                for k in sh.entries_named(&req.user) {
                    sh.remove(k);
                }
            }
            // Re-find: removing a line may have shifted the index.
            let i = db.passwd.find_id(req.uid).unwrap_or(i);
            db.passwd.set_field(i, NAME, &req.user);
            if let Some(sh) = db.shadow.as_mut() {
                if let Some(k) = sh.find_name(&old) {
                    sh.set_field(k, NAME, &req.user);
                    // The old password was someone else's.
                    sh.set_field(k, PASSWD, "*");
                    sh.set_field(k, SH_LASTCHG, &req.today.to_string());
                }
            }
            db.group.rename_member(GR_MEMBERS, &old, &req.user);
            if let Some(gs) = db.gshadow.as_mut() {
                gs.rename_member(GS_ADMINS, &old, &req.user);
                gs.rename_member(GS_MEMBERS, &old, &req.user);
            }
            notes.push(Note::Warn(format!(
                "uid {} belonged to '{old}'; renamed that entry to '{}' (its old home {old_home} is left alone)",
                req.uid, req.user
            )));
            i
        }
        (None, Some(j)) => {
            let old = db.passwd.field(j, ID);
            db.passwd.set_field(j, ID, &uid);
            notes.push(Note::Warn(format!(
                "user '{}' existed with uid {old}; changed it to {} (CLUSTER_USER_ID) so files on shared volumes carry the cluster uid; files already owned by {old} keep that owner",
                req.user, req.uid
            )));
            j
        }
        (None, None) => {
            if let Some(sh) = db.shadow.as_mut() {
                let stale = sh.entries_named(&req.user);
                for &k in &stale {
                    sh.remove(k);
                }
                if !stale.is_empty() {
                    notes.push(Note::Warn(format!(
                        "/etc/shadow had a line for '{}' but no account of that name existed; replaced it (its password is not inherited)",
                        req.user
                    )));
                }
            }
            let pw = if db.shadow.is_some() { "x" } else { "*" };
            let fields = [req.user.as_str(), pw, &uid, &req.gid.to_string(), "", &req.home, &req.shell];
            db.passwd.push(&fields);
            notes.push(Note::Info(format!(
                "created user '{}' (uid {}, group {} gid {}, home {}, shell {})",
                req.user,
                req.uid,
                db.group.find_id(req.gid).map(|g| db.group.field(g, NAME)).unwrap_or_default(),
                req.gid,
                req.home,
                req.shell
            )));
            db.passwd.find_name(&req.user).unwrap_or(0)
        }
    };
    let before = (db.passwd.field(idx, PW_GID), db.passwd.field(idx, PW_HOME), db.passwd.field(idx, PW_SHELL));
    db.passwd.set_field(idx, PW_GID, &req.gid.to_string());
    db.passwd.set_field(idx, PW_HOME, &req.home);
    db.passwd.set_field(idx, PW_SHELL, &req.shell);
    if db.shadow.is_some() {
        db.passwd.set_field(idx, PASSWD, "x");
    }
    let after = (db.passwd.field(idx, PW_GID), db.passwd.field(idx, PW_HOME), db.passwd.field(idx, PW_SHELL));
    if before != after && by_uid.is_some() && by_uid == by_name {
        notes.push(Note::Info(format!(
            "updated user '{}': gid/home/shell {}/{}/{} -> {}/{}/{}",
            req.user, before.0, before.1, before.2, after.0, after.1, after.2
        )));
    }
    if let Some(sh) = db.shadow.as_mut() {
        if sh.find_name(&req.user).is_none() {
            new_shadow_line(sh, &req.user, req.today);
        }
    }
    Ok(())
}

fn plan_memberships(db: &mut Database, req: &Request, notes: &mut Vec<Note>) {
    for g in &req.extra_groups {
        let Some(i) = db.group.find_name(g) else {
            notes.push(Note::Warn(format!(
                "LABKIT_EXTRA_GROUPS names group '{g}', which this image does not have; skipped"
            )));
            continue;
        };
        if db.group.add_member(i, GR_MEMBERS, &req.user) {
            notes.push(Note::Info(format!("added '{}' to group '{g}' (LABKIT_EXTRA_GROUPS)", req.user)));
        }
        if let Some(gs) = db.gshadow.as_mut() {
            if let Some(k) = gs.find_name(g) {
                gs.add_member(k, GS_MEMBERS, &req.user);
            }
        }
    }
}

/// Check the planned files as the C library will read them: the user's name
/// and uid resolve to one entry with the requested gid, the gid resolves to
/// the primary group, the user has a shadow line, and every system account
/// and group still has its name and id. Every lookup goes through the
/// tables' indexes: the cost does not grow with the number of accounts.
fn verify(old: &Database, new: &Database, req: &Request, group_name: &str) -> Result<(), Refusal> {
    let bad = |what: String| {
        Err(Refusal(format!(
            "the account files cannot be made unambiguous for {} (uid {}): {what}; fix the account files in the image",
            req.user, req.uid
        )))
    };
    let pw = &new.passwd;
    let Some(i) = pw.find_name(&req.user) else { return bad(format!("no entry named {}", req.user)) };
    if pw.find_id(req.uid) != Some(i) {
        let j = pw.find_id(req.uid).unwrap_or(i);
        return bad(format!("uid {} resolves to {}", req.uid, pw.describe(j)));
    }
    if pw.id_at(i, PW_GID) != Some(req.gid) {
        return bad(format!("{} does not have gid {}", pw.describe(i), req.gid));
    }
    match new.group.find_id(req.gid) {
        Some(g) if new.group.field(g, NAME) == group_name => {}
        Some(g) => return bad(format!("gid {} resolves to {}", req.gid, new.group.describe(g))),
        None => return bad(format!("no group has gid {}", req.gid)),
    }
    if let Some(sh) = &new.shadow {
        if sh.find_name(&req.user).is_none() {
            return bad(format!("/etc/shadow has no line glibc reads for {}", req.user));
        }
    }
    for (old_t, new_t, is_system) in [
        (&old.passwd, &new.passwd, &(|id| req.limits.is_system_uid(id)) as &dyn Fn(u32) -> bool),
        (&old.group, &new.group, &|id| req.limits.is_system_gid(id)),
    ] {
        // Through the id index: only the system entries are read.
        for (idx, id) in old_t.ids_where(is_system) {
            let Some(name) = old_t.field_bytes(idx, NAME) else { continue };
            // Only the first entry of a name is what lookups by name see.
            let first = old_t.find_name_bytes(&name) == Some(idx);
            if first && new_t.find_name_bytes(&name).and_then(|j| new_t.id_at(j, ID)) != Some(id) {
                return bad(format!("the system entry {} would change", old_t.describe(idx)));
            }
        }
    }
    Ok(())
}

/// The supplementary groups the job gets: its primary group, the groups whose
/// member lists name it, and the gids PID 1 was started with that root's own
/// memberships do not explain (Kubernetes fsGroup/supplementalGroups, Docker
/// --group-add). gid 0 only when the user's own memberships give it.
pub fn supplementary_groups(db: &Database, user: &str, gid: u32, inherited: &[u32]) -> Vec<u32> {
    let mut groups = vec![gid];
    for g in db.group.groups_listing(user) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let roots_own = db.group.groups_listing("root");
    for &g in inherited {
        if g != 0 && !roots_own.contains(&g) && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}
