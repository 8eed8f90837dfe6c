//! Property: however the network splits a response into chunks, the decoded events are the same.
//! Runs every vendor fixture through every possible kind of split: single bytes, random cut points,
//! cuts inside CRLF pairs and multi-byte UTF-8 characters included.

#![allow(clippy::unwrap_used)]

use exoclaw_providers::WireFormat;
use exoclaw_testkit::fixtures::{AnthropicWire, GeminiWire, OpenAiWire, WireFixtures};
use proptest::prelude::*;

fn streams(fixtures: &dyn WireFixtures) -> Vec<Vec<u8>> {
    let mut texts = vec![
        fixtures.text_stream().0,
        fixtures.text_stream_without_usage(),
        fixtures.tool_call_stream(),
        fixtures.parallel_tool_calls_stream(),
    ];
    // The same bytes with CRLF line endings, which servers may use.
    texts.push(fixtures.text_stream().0.iter().map(|c| c.replace('\n', "\r\n")).collect());
    texts.into_iter().map(|chunks| chunks.concat().into_bytes()).collect()
}

fn cases() -> Vec<(WireFormat, Vec<u8>)> {
    let mut out = Vec::new();
    let formats: [(WireFormat, &dyn WireFixtures); 3] = [
        (WireFormat::Anthropic, &AnthropicWire),
        (WireFormat::OpenAi, &OpenAiWire),
        (WireFormat::Gemini, &GeminiWire),
    ];
    for (format, fixtures) in formats {
        for bytes in streams(fixtures) {
            out.push((format, bytes));
        }
    }
    out
}

fn split_at(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(bytes[start..cut].to_vec());
        start = cut;
    }
    pieces
}

#[test]
fn byte_by_byte_decoding_equals_whole_decoding() {
    for (format, bytes) in cases() {
        let whole = format.decode_stream([bytes.as_slice()]).unwrap();
        assert!(whole.len() >= 2, "{format:?}: fixture decoded to too little: {whole:?}");
        let bytewise = format.decode_stream(bytes.chunks(1)).unwrap();
        assert_eq!(bytewise, whole, "{format:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_yields_the_same_events(case in 0usize..64, cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let cases = cases();
        let (format, bytes) = &cases[case % cases.len()];
        let whole = format.decode_stream([bytes.as_slice()]).unwrap();
        let pieces = split_at(bytes, &cuts);
        let split = format.decode_stream(pieces.iter().map(Vec::as_slice)).unwrap();
        prop_assert_eq!(split, whole);
    }
}
