//! `labkit check`: clean trees pass (the negative control), and each kind of
//! drift and each manifest or template error fails with the file named.
//! Exit codes: 0 clean, 1 drift, 2 invalid input.
mod images_support;
use images_support::*;

const M: &str = "images/manifest.toml";

fn check(s: &Scratch) -> std::process::Output {
    labkit(s.path(), &["check"])
}

#[test]
fn clean_tree_passes() {
    let s = fixture_family();
    let t = expect(check(&s), 0);
    assert!(t.contains("up to date"), "{t}");
}

#[test]
fn modified_when_inputs_changed_without_render() {
    let s = fixture_family();
    s.edit(M, "python = \"3.12\" }", "python = \"3.13\" }");
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/base/cpu/Dockerfile: modified"), "{t}");
    assert!(t.contains("run `labkit render`"), "{t}");
    // Templates are inputs too.
    let s = fixture_family();
    s.edit("images/templates/app.Dockerfile.tera", "RUN echo", "RUN printf");
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/app/gpu/Dockerfile: modified"), "{t}");
    assert!(!t.contains("base/cpu/Dockerfile: modified"), "base does not use app's template: {t}");
}

#[test]
fn missing_output() {
    let s = fixture_family();
    std::fs::remove_file(s.join("images/generated/app/cpu/Dockerfile")).unwrap();
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/app/cpu/Dockerfile: missing"), "{t}");
}

#[test]
fn orphaned_outputs() {
    let s = fixture_family();
    s.write("images/generated/app/arm/Dockerfile", "FROM scratch\n");
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/app/arm/Dockerfile: orphaned"), "{t}");

    // An image dropped from the manifest leaves its committed files orphaned.
    let s = fixture_family();
    let m = s.read(M);
    let cut = m.find("[images.app]").unwrap();
    s.write(M, &m[..cut]);
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/app/cpu/Dockerfile: orphaned"), "{t}");
    assert!(t.contains("images/generated/app/gpu/Dockerfile: orphaned"), "{t}");
    // render then cleans them up and check is happy again.
    expect(labkit(s.path(), &["render"]), 0);
    expect(check(&s), 0);
}

#[test]
fn hand_edits() {
    let s = fixture_family();
    s.edit("images/generated/base/gpu/Dockerfile", "RUN nvcc --version", "RUN nvcc --version && true");
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/base/gpu/Dockerfile: hand-edited"), "{t}");
    assert!(t.contains("line "), "names the first differing line: {t}");

    let s = fixture_family();
    let idx = s.read("images/generated/INDEX");
    s.write("images/generated/INDEX", &idx.replace("app/cpu", "app/cpu2"));
    let t = expect(check(&s), 1);
    assert!(t.contains("images/generated/INDEX: hand-edited"), "{t}");
}

fn invalid(s: &Scratch, needle: &str) {
    let t = expect(check(s), 2);
    assert!(t.contains(needle), "expected {needle:?} in:\n{t}");
}

#[test]
fn unknown_parent() {
    let s = fixture_family();
    s.edit(M, "parent      = \"base\"", "parent      = \"bsae\"");
    invalid(&s, "image `app`: parent `bsae` is not an image");
}

#[test]
fn parent_cycle() {
    let s = fixture_family();
    s.edit(
        M,
        "template    = \"base.Dockerfile.tera\"",
        "template    = \"base.Dockerfile.tera\"\nparent      = \"app\"",
    );
    invalid(&s, "cycle: app -> base -> app");
}

#[test]
fn duplicate_tag() {
    let s = fixture_family();
    s.edit(M, "aliases     = [\"cuda12\", \"latest\"]", "aliases     = [\"cuda12\", \"cpu\"]");
    invalid(&s, "tag `registry.example.org/lab/base:cpu` is produced by both `base-cpu` and `base-gpu`");
}

#[test]
fn variant_the_parent_is_not_built_for() {
    let s = fixture_family();
    s.edit(
        M,
        "variants    = [\"cpu\", \"gpu\"]\ntags        = [\"{variant}\", \"{alias}\"]",
        "variants    = [\"cpu\"]\ntags        = [\"{variant}\", \"{alias}\"]",
    );
    invalid(&s, "image `app` is built for variant `gpu` but its parent `base` is not");
}

#[test]
fn unknown_variant_and_unknown_key() {
    let s = fixture_family();
    s.edit(
        M,
        "variants    = [\"cpu\", \"gpu\"]\ntags        = [\"{variant}\"]",
        "variants    = [\"cpu\", \"tpu\"]\ntags        = [\"{variant}\"]",
    );
    invalid(&s, "image `app`: variant `tpu` is not declared");

    let s = fixture_family();
    s.edit(M, "kind        = \"cpu\"", "kind        = \"cpu\"\nbsae        = \"x\"");
    invalid(&s, "unknown field `bsae`");
    invalid(&s, "images/manifest.toml");
}

#[test]
fn undefined_template_variable_names_file_and_line() {
    let s = fixture_family();
    s.edit("images/templates/app.Dockerfile.tera", "{{ image.name }}", "{{ image.nmae }}");
    invalid(&s, "images/templates/app.Dockerfile.tera:3");

    // An undefined name in `if` is an error too, not false.
    let s = fixture_family();
    s.edit("images/templates/base.Dockerfile.tera", "{%- if variant.is_cuda %}", "{%- if is_cuda %}");
    invalid(&s, "images/templates/base.Dockerfile.tera:5: image base, variant cpu: undefined variable `is_cuda`");
}

#[test]
fn missing_template_file() {
    let s = fixture_family();
    std::fs::remove_file(s.join("images/templates/app.Dockerfile.tera")).unwrap();
    invalid(&s, "image `app`: template images/templates/app.Dockerfile.tera does not exist");
}

#[test]
fn eol_and_unlocked_bases_warn_without_failing() {
    let s = fixture_family();
    s.edit(M, "eol         = \"2030-01-01\"", "eol         = \"2001-01-01\"");
    expect(labkit(s.path(), &["render"]), 0);
    let t = expect(check(&s), 0);
    assert!(t.contains("warning: variant `gpu` reached its end of life on 2001-01-01"), "{t}");
    assert!(t.contains("is not locked to a digest"), "{t}");
}
