//! The `#[runtime::main]` and `#[runtime::test]` attributes: misuse is a
//! compile error that points at the offending code, and correct uses compile.

#[test]
fn macro_misuse_is_a_compile_error() {
    // Set only by the ASan CI pass, where proc-macros can't be rebuilt with
    // the sanitizer.
    if std::env::var_os("RUNTIME_SKIP_UI_TESTS").is_some() {
        return;
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
    t.pass("ui-pass/*.rs");
}
