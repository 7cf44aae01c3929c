//! A submit's body, read as the provider reads it: the fields, their types and allowed values,
//! the model and mode priced, and both URLs well formed.
//!
//! Owns: the 400 messages for a body that is wrong before anything is fetched.
//!
//! May not: fetch, probe or admit anything (the handler in [`super`] does, in its order).

use serde_json::Value;

use crate::media::Orientation;
use crate::pricing::{self, Mode, PriceTable};

const PROMPT_MAX_CHARS: usize = 2500;

/// A submit body that passed the checks that need no fetching.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    pub model: String,
    pub mode: Mode,
    pub orientation: Orientation,
    pub sound: bool,
    pub prompt: Option<String>,
    pub image_url: String,
    pub video_url: String,
    /// Credits per second for this model and mode, in thousandths.
    pub rate: pricing::MilliCreditsPerSecond,
}

/// Check a submit body; the error is the message of a 400.
pub fn parse(body: &[u8], prices: &PriceTable) -> Result<SubmitRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let obj = value.as_object().ok_or("the body must be a JSON object")?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("`{name}` must be a string, not {other}")),
        }
    };
    let required = |name: &str| -> Result<&str, String> {
        text(name)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("`{name}` is required"))
    };
    let model = required("model")?;
    if !prices.knows_model(model) {
        return Err(format!("unknown model `{model}`"));
    }
    let mode = match required("mode")? {
        "std" => Mode::Std,
        "pro" => Mode::Pro,
        other => return Err(format!("`mode` must be `std` or `pro`, not `{other}`")),
    };
    let rate = prices
        .rate(model, mode)
        .ok_or_else(|| format!("model `{model}` has no `{mode}` mode"))?;
    let orientation = match required("character_orientation")? {
        "image" => Orientation::Image,
        "video" => Orientation::Video,
        other => {
            return Err(format!(
                "`character_orientation` must be `image` or `video`, not `{other}`"
            ));
        }
    };
    // Both spellings are accepted always: a boolean, or "yes"/"no" as some gateways take it.
    let sound = match obj.get("keep_original_sound") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("yes") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("no") => false,
        Some(other) => {
            return Err(format!(
                "`keep_original_sound` must be true/false or \"yes\"/\"no\", not {other}"
            ));
        }
    };
    let prompt = text("prompt")?.map(str::to_owned);
    if let Some(p) = &prompt {
        let chars = p.chars().count();
        if chars > PROMPT_MAX_CHARS {
            return Err(format!(
                "`prompt` is {chars} characters; at most {PROMPT_MAX_CHARS} are allowed"
            ));
        }
    }
    let url = |name: &str| -> Result<String, String> {
        let raw = required(name)?;
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(raw.to_owned()),
            _ => Err(format!(
                "`{name}` must be a public http(s) URL, not `{raw}`"
            )),
        }
    };
    Ok(SubmitRequest {
        model: model.to_owned(),
        mode,
        orientation,
        sound,
        prompt,
        image_url: url("image_url")?,
        video_url: url("video_url")?,
        rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn good() -> Value {
        json!({
            "model": "kling-v3-motion-control",
            "image_url": "http://127.0.0.1:1/i.png",
            "video_url": "http://127.0.0.1:1/v.mp4",
            "character_orientation": "image",
            "mode": "std",
            "keep_original_sound": true,
            "prompt": "slow pan"
        })
    }

    fn with(key: &str, value: Value) -> Vec<u8> {
        let mut v = good();
        v[key] = value;
        body(v)
    }

    #[test]
    fn a_good_body_parses() {
        let req = parse(&body(good()), &PriceTable::default()).unwrap();
        assert_eq!(req.mode, Mode::Std);
        assert_eq!(req.orientation, Orientation::Image);
        assert!(req.sound);
        assert_eq!(req.rate, 113_168);
    }

    #[test]
    fn sound_takes_yes_and_no_too() {
        let p = PriceTable::default();
        assert!(
            !parse(&with("keep_original_sound", json!("no")), &p)
                .unwrap()
                .sound
        );
        assert!(
            parse(&with("keep_original_sound", json!("YES")), &p)
                .unwrap()
                .sound
        );
        assert!(parse(&with("keep_original_sound", json!("maybe")), &p).is_err());
    }

    #[test]
    fn each_bad_field_is_named() {
        let p = PriceTable::default();
        for (key, value, needle) in [
            ("model", json!("kling-v9"), "unknown model"),
            ("mode", json!("ultra"), "`mode`"),
            (
                "character_orientation",
                json!("sideways"),
                "character_orientation",
            ),
            ("prompt", json!("x".repeat(2501)), "2501 characters"),
            ("image_url", json!("file:///etc/passwd"), "image_url"),
            ("video_url", Value::Null, "`video_url` is required"),
        ] {
            let err = parse(&with(key, value), &p).unwrap_err();
            assert!(err.contains(needle), "{key}: {err}");
        }
        assert!(parse(&with("prompt", json!("é".repeat(2500))), &p).is_ok());
        assert!(
            parse(b"not json", &p)
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
