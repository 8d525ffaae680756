//! The formats values must have where they land: image references and their
//! parts (OCI distribution reference grammar), tags, build-argument names,
//! dates and timestamps, and text that goes into a Dockerfile. Each check is
//! done once, where a value enters labkit (manifest load, command-line
//! flags); everything after that trusts the typed value.
//!
//! Pure functions returning a reason on failure; callers add the culprit's
//! name. Sources: the reference grammar of distribution/reference
//! (`reference.go`), RFC 3339 (timestamps), the Dockerfile reference (build
//! argument names are shell-variable names).

/// One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub(crate) fn path_component(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() {
        return Err("an empty path component".into());
    }
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(format!("`{s}` must start and end with a lower-case letter or a digit"));
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`, then alnum.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return Err(format!(
                "`{s}` has `{sep}`; repository names are lower case: [a-z0-9] separated by `.`, `_`, `__` or `-`"
            ));
        }
    }
    Ok(())
}

/// A registry host: DNS labels separated by dots (or `localhost`, or an IP
/// address), optionally `:port`.
pub(crate) fn domain(s: &str) -> Result<(), String> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("registry `{s}`: the port must be a number"));
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!("registry host `{host}` is not a host name (letters, digits, `-`, dot-separated)"));
    }
    Ok(())
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn tag(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = s.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{s}` is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128)"))
    }
}

/// `algorithm:hex`; sha256 must have 64 lower-case hex digits.
pub(crate) fn digest(s: &str) -> Result<(), String> {
    let (alg, hex) = s.split_once(':').ok_or_else(|| format!("digest `{s}` is not ALGORITHM:HEX"))?;
    let alg_ok =
        !alg.is_empty() && alg.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(&c));
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    if !alg_ok || !hex_ok || (alg == "sha256" && hex.len() != 64) {
        return Err(format!("digest `{s}` is not ALGORITHM:HEX (sha256 with 64 lower-case hex digits)"));
    }
    Ok(())
}

/// A repository name with its registry: `host[:port]/component[/component…]`.
pub(crate) fn repository(s: &str) -> Result<(), String> {
    if s.len() > 255 {
        return Err(format!("`{s}` is longer than 255 characters"));
    }
    let (host, path) = s.split_once('/').ok_or_else(|| format!("`{s}` names no registry host (host/name)"))?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(format!(
            "`{s}` starts with `{host}`, which is not a registry host (it has no `.` or `:` and is not localhost)"
        ));
    }
    domain(host)?;
    for c in path.split('/') {
        path_component(c)?;
    }
    Ok(())
}

/// A full image reference: `host[:port]/path[:tag][@digest]`, with a tag or
/// a digest (or both). Docker Hub images are written `docker.io/library/…`.
pub(crate) fn full_reference(s: &str) -> Result<(), String> {
    let (name_tag, dig) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = dig {
        digest(d)?;
    }
    let last_slash = name_tag.rfind('/').unwrap_or(0);
    let (name, tg) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    repository(name)?;
    match tg {
        Some(t) => tag(t),
        None if dig.is_some() => Ok(()),
        None => Err(format!("`{s}` has neither a tag nor a digest")),
    }
}

/// A build-argument name: a shell variable name, `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn arg_name(s: &str) -> Result<(), String> {
    let mut c = s.chars();
    let ok = matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{s}` is not a build-argument name ([A-Za-z_][A-Za-z0-9_]*)"))
    }
}

/// Text that may land in a Dockerfile line or a label: no control
/// characters (newline, carriage return, tab, NUL, DEL, C1). A newline would
/// end a `LABEL` or a comment and start a new instruction.
pub(crate) fn single_line(s: &str) -> Result<(), String> {
    match s.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((i, c)) => Err(format!("contains the control character {:?} at byte {i}; use one line of plain text", c)),
    }
}

/// A calendar date `YYYY-MM-DD` that exists (2026-02-30 does not).
pub(crate) fn date(s: &str) -> Result<jiff::civil::Date, String> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err(format!("`{s}` is not a YYYY-MM-DD date"));
    }
    s.parse::<jiff::civil::Date>().map_err(|e| format!("`{s}` is not a calendar date: {e}"))
}

/// An RFC 3339 timestamp with an offset (`2026-11-29T07:09:50Z`,
/// `2026-11-29T08:09:50+01:00`): what `org.opencontainers.image.created`
/// requires.
pub(crate) fn rfc3339(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let shape = b.len() >= 20
        && date(&s[..10]).is_ok()
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':'
        && s[11..13].bytes().chain(s[14..16].bytes()).chain(s[17..19].bytes()).all(|c| c.is_ascii_digit());
    if !shape {
        return Err(format!("`{s}` is not an RFC 3339 timestamp (e.g. 2026-11-29T07:09:50Z)"));
    }
    s.parse::<jiff::Timestamp>().map(|_| ()).map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))
}

/// `SOURCE_DATE_EPOCH`: a non-negative decimal integer (reproducible-builds.org).
pub(crate) fn source_date_epoch(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("SOURCE_DATE_EPOCH=`{s}` is not a non-negative integer number of seconds"));
    }
    t.parse::<i64>().map_err(|_| format!("SOURCE_DATE_EPOCH=`{s}` is out of range"))
}

/// An apt mirror URL: `http(s)://…` without whitespace, quotes or the
/// characters the apt step's `sed` replacement would interpret (`|`, `&`, `\`).
pub(crate) fn apt_mirror(s: &str) -> Result<(), String> {
    let scheme = s.starts_with("http://") || s.starts_with("https://");
    let bad = s.chars().find(|c| c.is_whitespace() || c.is_control() || "|&\\\"'`$;<>".contains(*c));
    match (scheme, bad) {
        (true, None) if s.len() > "https://".len() => Ok(()),
        (_, Some(c)) => Err(format!("apt mirror `{s}`: {c:?} is not allowed in the URL")),
        _ => Err(format!("apt mirror `{s}` is not an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for ok in [
            "docker.io/library/ubuntu:24.04",
            "docker.io/nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04",
            "localhost/debootstrap-noble:latest",
            "localhost:5000/a/b__c.d-e:1",
            "registry.example.org/lab/base@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(full_reference(ok).is_ok(), "{ok}: {:?}", full_reference(ok));
        }
        for bad in [
            "ubuntu:24.04",
            "docker.io/library/Ubuntu:24.04",
            "docker.io/library/ubuntu",
            "docker.io/library/ubuntu:",
            "docker.io/library/ubuntu:-x",
            "docker.io/library/ubuntu-:1",
            "docker.io/library/ub..untu:1",
            "docker.io//ubuntu:1",
            "docker.io/library/ubuntu:1@sha256:abc",
            "exa_mple.org/x:1",
            "example.org:port/x:1",
        ] {
            assert!(full_reference(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn dates_and_timestamps() {
        assert!(date("2026-12-31").is_ok());
        assert!(date("2028-02-29").is_ok());
        for bad in ["2026-02-30", "2026-13-45", "2026-00-00", "2027-02-29", "26-1-1", "2026-1-01"] {
            assert!(date(bad).is_err(), "{bad} accepted");
        }
        assert!(rfc3339("2026-11-29T07:09:50Z").is_ok());
        assert!(rfc3339("2026-11-29T08:09:50+01:00").is_ok());
        assert!(rfc3339("2026-11-29T08:09:50.25-05:30").is_ok());
        for bad in ["2026-11-29", "yesterday", "2026-11-29 07:09:50", "2026-02-30T00:00:00Z", "2026-11-29T25:00:00Z"] {
            assert!(rfc3339(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(source_date_epoch("1700000000"), Ok(1_700_000_000));
        for bad in ["", "-1", "1.5", "abc", "1e9"] {
            assert!(source_date_epoch(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn names_text_and_mirrors() {
        assert!(arg_name("PIP_INDEX_URL").is_ok());
        for bad in ["", "1X", "A-B", "A B", "A=B"] {
            assert!(arg_name(bad).is_err(), "{bad} accepted");
        }
        assert!(single_line("CPU only, Ubuntu 24.04 — ok").is_ok());
        for bad in ["a\nb", "a\rb", "a\tb", "a\u{7f}", "a\u{85}b"] {
            assert!(single_line(bad).is_err(), "{bad:?} accepted");
        }
        assert!(apt_mirror("http://mirror.example.org/ubuntu").is_ok());
        for bad in ["mirror.example.org", "http://a|b", "http://a b", "http://a&b", "ftp://x"] {
            assert!(apt_mirror(bad).is_err(), "{bad} accepted");
        }
    }
}
