//! Every provider passes the same conformance scenarios (exoclaw-testkit), each against a real
//! HTTP server on loopback replaying the vendor's published wire format.

#![allow(clippy::unwrap_used)]

use exoclaw_core::Provider;
use exoclaw_providers::{ProviderOptions, Timeouts};
use exoclaw_testkit::conformance::Target;
use std::{sync::Arc, time::Duration};

fn options(t: &Target, path: &str) -> ProviderOptions {
    ProviderOptions::default()
        .base_url(format!("{}{path}", t.base_url))
        .api_key(&t.api_key)
        .timeouts(Timeouts { connect: Duration::from_secs(2), first_byte: t.first_byte, idle: t.idle })
}

mod anthropic {
    use super::*;
    use exoclaw_providers::Anthropic;
    // Anthropic's base URL has no version prefix: requests go to `{base}/v1/messages`.
    exoclaw_testkit::conformance_suite!(
        exoclaw_testkit::fixtures::AnthropicWire,
        |t: &Target| -> Arc<dyn Provider> { Arc::new(Anthropic::new(options(t, "")).unwrap()) }
    );
}

mod gemini {
    use super::*;
    use exoclaw_providers::Gemini;
    exoclaw_testkit::conformance_suite!(
        exoclaw_testkit::fixtures::GeminiWire,
        |t: &Target| -> Arc<dyn Provider> { Arc::new(Gemini::new(options(t, "/v1beta")).unwrap()) }
    );
}

mod openai {
    use super::*;
    use exoclaw_providers::{OpenAiCompatible, presets::OPENAI};
    exoclaw_testkit::conformance_suite!(
        exoclaw_testkit::fixtures::OpenAiWire,
        |t: &Target| -> Arc<dyn Provider> {
            Arc::new(OpenAiCompatible::new(&OPENAI, options(t, "/v1")).unwrap())
        }
    );
}

/// The compatible family shares OpenAI's wire format; one preset run proves the preset plumbing.
mod llamacpp_preset {
    use super::*;
    use exoclaw_providers::{OpenAiCompatible, presets::LLAMACPP};
    exoclaw_testkit::conformance_suite!(
        exoclaw_testkit::fixtures::OpenAiWire,
        |t: &Target| -> Arc<dyn Provider> {
            Arc::new(OpenAiCompatible::new(&LLAMACPP, options(t, "/v1")).unwrap())
        }
    );
}
