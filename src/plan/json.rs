//! The stable JSON document `recast plan --json` prints: its shape is a contract with the
//! scripts that read it, so fields are added, never renamed or removed.
//!
//! Owns: that document. May not: probe, price or compare anything (the plan has done it).

use super::{Plan, media_label};
use crate::pricing::credits_to_usd;

impl Plan {
    /// The stable JSON document of `recast plan --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let (to_submit, credits) = self.to_submit();
        let jobs: Vec<serde_json::Value> = self
            .jobs()
            .map(|j| {
                serde_json::json!({
                    "subject": j.spec.subject_id,
                    "key": j.spec.key.hex().as_str(),
                    "image": {
                        "source": media_label(&j.spec.image),
                        "format": j.image.as_ref().map(|i| i.format),
                        "width": j.image.as_ref().map(|i| i.width),
                        "height": j.image.as_ref().map(|i| i.height),
                        "bytes": j.image.as_ref().map(|i| i.size_bytes),
                    },
                    "model": j.spec.settings.model,
                    "mode": j.spec.settings.mode,
                    "character_orientation": j.spec.settings.orientation,
                    "output": j.spec.output_name,
                    "status": j.status.label(),
                    "credits": j.estimate.map(|e| e.credits),
                    "usd": j.estimate.map(|e| round_usd(e.usd())),
                    "problems": j.problems,
                })
            })
            .collect();
        serde_json::json!({
            "batch": self.batch.name,
            "provider": self.provider,
            "reference": {
                "source": media_label(&self.batch.reference_video),
                "container": self.reference.container,
                "duration_ms": self.reference.duration_ms,
                "width": self.reference.width,
                "height": self.reference.height,
                "bytes": self.reference.size_bytes,
            },
            "jobs": jobs,
            "totals": {
                "jobs": self.batch.jobs.len(),
                "invalid": self.invalid_count(),
                "to_submit": to_submit,
                "credits": credits,
                "usd": credits.map(|c| round_usd(credits_to_usd(c))),
            },
            "budget": self.budget,
        })
    }
}

/// USD to a tenth of a cent, as the provider quotes it.
pub fn round_usd(usd: f64) -> f64 {
    (usd * 1000.0).round() / 1000.0
}
