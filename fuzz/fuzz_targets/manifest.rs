//! The image manifest loader (`labkit::images::manifest::Family::from_str`):
//! never panics on arbitrary text, with or without a lock and a base
//! override. A manifest it accepts expands to targets whose parents come
//! first, and serialising the parsed manifest back to TOML and loading that
//! gives the same targets.
#![no_main]

use labkit::images::{BaseOverrides, Family, Lock, Parent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lock = Lock::default();
    lock.set(
        "docker.io/library/ubuntu:24.04",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    );
    let mut overrides = BaseOverrides::new();
    for (lock, overrides) in [(Lock::default(), BaseOverrides::new()), (lock, overrides.clone())] {
        match Family::from_str(text, lock.clone(), &overrides, None) {
            Ok(family) => {
                for (i, t) in family.targets.iter().enumerate() {
                    assert!(!t.tags.is_empty(), "target {} has no tag", t.name);
                    let _ = (t.parent.pinned(), t.parent.name(), t.parent.digest());
                    if let Parent::Target { target, .. } = &t.parent {
                        let p = family.targets.iter().position(|x| &x.name == target).expect("parent target exists");
                        assert!(p < i, "parent {target} after child {}", t.name);
                    }
                }
                let again = toml::to_string(&family.manifest).expect("a loaded manifest serialises");
                let back = Family::from_str(&again, lock, &overrides, None).expect("a re-serialised manifest loads");
                let names = |f: &Family| {
                    f.targets.iter().map(|t| (t.name.clone(), t.tags.clone(), t.depth)).collect::<Vec<_>>()
                };
                assert_eq!(names(&back), names(&family));
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "an error without a message");
                let _ = errors.to_string();
            }
        }
    }
    let _ = labkit::images::parse_override(text);
    overrides.insert("cpu".into(), "localhost/noble:latest".into());
    let _ = Family::from_str(text, Lock::default(), &overrides, None);
    // The lock file loader's parser on the same text.
    let _ = toml::from_str::<Lock>(text);
});
