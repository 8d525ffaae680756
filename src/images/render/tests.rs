use super::templates::find_word;
use super::*;

#[test]
fn normalize_collapses_blank_runs_and_trailing_space() {
    assert_eq!(normalize("\n\na  \n\n\n\nb\n\n\n"), "a\n\nb\n");
}

#[test]
fn quote_escapes_expansion() {
    assert_eq!(quote(r#"a "b" $c"#), r#""a \"b\" \$c""#);
}

#[test]
fn index_round_trips() {
    let r = Rendered {
        files: vec![RenderedFile { target: "a-b".into(), path: "a/b/Dockerfile".into(), content: "x\n".into() }],
    };
    let idx = parse_index(&r.index());
    assert_eq!(idx["a/b/Dockerfile"], sha256_hex(b"x\n"));
}

#[test]
fn find_word_skips_attribute_access() {
    let src = "x\n{{ a.typo }}\n{% if typo %}\n";
    assert_eq!(find_word(src, "typo"), Some(3));
}
