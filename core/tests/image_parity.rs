//! hiedge's one image conversion against Pillow (the rules and the reference are in
//! `support/pillow.rs`, which the browser test uses too).

#[path = "support/pillow.rs"]
mod pillow;

#[test]
fn conversion_matches_pillow_within_one_level() {
    pillow::check_against_pillow().unwrap_or_else(|e| panic!("{e}"));
}
