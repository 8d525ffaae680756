//! Deciding what the account files must become: the conflict rules between
//! the requested user/group and what the image already has. Pure code: takes
//! a parsed [`Database`] and a [`Request`], returns the new database and one
//! note per decision. Writing is `files`' job.
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

use crate::init::accounts::{Database, Table};

/// One decision, logged by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Info(String),
    Warn(String),
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

/// Compute the database that holds exactly the requested account.
pub fn plan(db: &Database, req: &Request) -> Plan {
    let mut db = db.clone();
    let mut notes = Vec::new();
    let group_name = plan_group(&mut db, req, &mut notes);
    plan_user(&mut db, req, &group_name, &mut notes);
    plan_memberships(&mut db, req, &mut notes);
    Plan { db, group_name, notes }
}

fn plan_group(db: &mut Database, req: &Request, notes: &mut Vec<Note>) -> String {
    let by_gid = db.group.find_id(req.gid);
    let by_name = db.group.find_name(&req.group);
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
    name
}

fn new_shadow_line(shadow: &mut Table, user: &str, today: u64) {
    // `*`: no password can match, yet the account is not "locked" (OpenSSH
    // refuses public keys for a hash starting with `!` when UsePAM is off), and
    // lastchg = today so su never demands a password change.
    shadow.push(&[user, "*", &today.to_string(), "0", "99999", "7", "", "", ""]);
}

fn plan_user(db: &mut Database, req: &Request, group_name: &str, notes: &mut Vec<Note>) {
    let uid = req.uid.to_string();
    let by_uid = db.passwd.find_id(req.uid);
    let by_name = db.passwd.find_name(&req.user);
    let idx = match (by_uid, by_name) {
        (Some(i), Some(j)) if i == j => i,
        (Some(i), by_name) => {
            let old = db.passwd.field(i, NAME);
            let old_home = db.passwd.field(i, PW_HOME);
            if by_name.is_some() {
                // Every entry holding the name with another uid goes (an
                // image can carry the same name twice; first match wins in
                // libc, so one left over would still shadow ours).
                while let Some(j) = db.passwd.find_name(&req.user).filter(|&j| db.passwd.id_at(j, ID) != Some(req.uid))
                {
                    let stale_uid = db.passwd.field(j, ID);
                    notes.push(Note::Warn(format!(
                        "user '{}' existed with uid {stale_uid} while uid {} belonged to '{old}'; removed the stale '{}' entry (uid {stale_uid}) so the name is unique",
                        req.user, req.uid, req.user
                    )));
                    db.passwd.remove(j);
                }
                if let Some(sh) = db.shadow.as_mut() {
                    while let Some(k) = sh.find_name(&req.user) {
                        sh.remove(k);
                    }
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
            let pw = if db.shadow.is_some() { "x" } else { "*" };
            db.passwd.push(&[&req.user, pw, &uid, &req.gid.to_string(), "", &req.home, &req.shell]);
            notes.push(Note::Info(format!(
                "created user '{}' (uid {}, group {group_name} gid {}, home {}, shell {})",
                req.user, req.uid, req.gid, req.home, req.shell
            )));
            db.passwd.find_id(req.uid).unwrap_or(0)
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
            // Crash healing: a start killed between writing passwd and shadow
            // during a rename leaves the entry's old shadow line behind under
            // its old name. A single shadow line that names no user at all is
            // that line (or dead weight): take it over, as the uninterrupted
            // rename would have. Otherwise add a new line.
            let orphans = sh.entries_not_named(&db.passwd.names());
            if let [k] = orphans[..] {
                let old = sh.field(k, NAME);
                sh.set_field(k, NAME, &req.user);
                sh.set_field(k, PASSWD, "*");
                sh.set_field(k, SH_LASTCHG, &req.today.to_string());
                notes.push(Note::Info(format!(
                    "shadow line of '{old}', whose user no longer exists, now belongs to '{}' (no usable password)",
                    req.user
                )));
            } else {
                new_shadow_line(sh, &req.user, req.today);
            }
        }
    }
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
