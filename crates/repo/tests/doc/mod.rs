//! The format document, read by the tests that check it and by the writer of the fuzz seeds.

pub const DOC: &str = include_str!("../../../../docs/repository-format.md");

/// The document's JSON examples, in order.
pub fn json_blocks() -> Vec<String> {
    DOC.split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or(b).to_owned())
        .collect()
}
