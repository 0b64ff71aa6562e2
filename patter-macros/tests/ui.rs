//! The macros' compile-error suite: every `fail` case must fail with exactly the diagnostics
//! in its `.stderr`, and every `pass` case must compile and run. Regenerate the expected
//! output with `TRYBUILD=overwrite cargo test -p patter-macros --test ui`, then read it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
