//! Job keys: the identity of a clip.
//!
//! Owns: the versioned encoding hashed into a [`JobKey`]. Same key = same clip, so the store
//! never makes a clip twice; a key therefore covers everything that shapes the clip and nothing
//! that does not (subject id, output name, batch name, manifest path).
//!
//! May not: change the encoding of an existing scheme. Keys are persisted; a change in what a key
//! covers needs a new scheme tag, so old keys stay meaningful.

use sha2::{Digest, Sha256};

use super::{ClipSettings, JobKey, MediaSource};
use crate::media::Orientation;

/// Tag hashed first: bump it whenever the fields or their encoding change.
pub const JOB_KEY_SCHEME: &str = "recast-job-v1";

/// The key of the clip made from `image` performing `reference_video` with `settings`.
///
/// Local media count by content (sha256), so moving or renaming a file keeps its key; remote
/// media count by URL, since their content is not ours to read.
pub fn job_key(
    settings: &ClipSettings,
    image: &MediaSource,
    reference_video: &MediaSource,
) -> JobKey {
    let mut encoder = KeyEncoder(Sha256::new());
    encoder.field(JOB_KEY_SCHEME.as_bytes());
    encoder.field(settings.model.as_bytes());
    encoder.field(settings.mode.as_str().as_bytes());
    encoder.field(match settings.orientation {
        Orientation::Image => b"image",
        Orientation::Video => b"video",
    });
    encoder.field(if settings.keep_original_sound {
        b"sound"
    } else {
        b"mute!"
    });
    // No prompt and an empty prompt are different requests to the provider.
    match &settings.prompt {
        None => encoder.field(b"no-prompt"),
        Some(prompt) => {
            encoder.field(b"prompt");
            encoder.field(prompt.as_bytes());
        }
    }
    encoder.media(image);
    encoder.media(reference_video);
    JobKey::from_digest(&encoder.0.finalize().into())
}

/// Every field is length-prefixed, so no two different field lists encode to the same bytes.
struct KeyEncoder(Sha256);

impl KeyEncoder {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn media(&mut self, media: &MediaSource) {
        match media {
            MediaSource::Local(local) => {
                self.field(b"sha256");
                self.field(local.sha256().as_bytes());
            }
            MediaSource::Remote { url } => {
                self.field(b"url");
                self.field(url.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Mode;
    use proptest::prelude::*;

    fn settings() -> ClipSettings {
        ClipSettings {
            model: "kling-v3-motion-control".into(),
            mode: Mode::Std,
            orientation: Orientation::Image,
            keep_original_sound: true,
            prompt: None,
        }
    }

    fn local(sha: &str, rel: &str) -> MediaSource {
        let path = format!("/somewhere/{rel}").into();
        MediaSource::Local(super::super::LocalMedia::new(path, rel, sha).expect("valid media"))
    }

    fn remote(url: &str) -> MediaSource {
        MediaSource::Remote { url: url.into() }
    }

    #[test]
    fn key_is_hex_sha256_and_stable() {
        let key = job_key(
            &settings(),
            &remote("https://a/x.png"),
            &remote("https://a/v.mp4"),
        );
        assert_eq!(key.hex().as_str().len(), 64);
        assert!(key.hex().as_str().chars().all(|c| c.is_ascii_hexdigit()));
        // Pinned: a change here silently re-makes every clip already made. Bump the scheme instead.
        assert_eq!(
            key,
            job_key(
                &settings(),
                &remote("https://a/x.png"),
                &remote("https://a/v.mp4")
            )
        );
        insta::assert_snapshot!(key.hex().as_str(), @"f7a54fc46bf14de30f2fe451d97575c329606129cfe7e7c8ed2d29dad25b4897");
    }

    #[test]
    fn no_prompt_and_empty_prompt_differ() {
        let video = remote("https://a/v.mp4");
        let image = remote("https://a/x.png");
        let mut empty = settings();
        empty.prompt = Some("".into());
        assert_ne!(
            job_key(&settings(), &image, &video),
            job_key(&empty, &image, &video)
        );
    }

    #[test]
    fn local_media_count_by_content_not_path() {
        let video = remote("https://a/v.mp4");
        let (ab, cd) = ("ab".repeat(32), "cd".repeat(32));
        let a = job_key(&settings(), &local(&ab, "one.png"), &video);
        let b = job_key(&settings(), &local(&ab, "renamed/two.png"), &video);
        let c = job_key(&settings(), &local(&cd, "one.png"), &video);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn image_and_video_are_not_interchangeable() {
        let x = remote("https://a/x");
        let y = remote("https://a/y");
        assert_ne!(job_key(&settings(), &x, &y), job_key(&settings(), &y, &x));
    }

    fn arb_settings() -> impl Strategy<Value = ClipSettings> {
        (
            "[a-z0-9.-]{1,12}",
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(".{0,12}"),
        )
            .prop_map(|(model, pro, video, sound, prompt)| ClipSettings {
                model: model.into(),
                mode: if pro { Mode::Pro } else { Mode::Std },
                orientation: if video {
                    Orientation::Video
                } else {
                    Orientation::Image
                },
                keep_original_sound: sound,
                prompt: prompt.map(Into::into),
            })
    }

    proptest! {
        #[test]
        fn every_clip_shaping_field_changes_the_key(
            base in arb_settings(),
            other in arb_settings(),
            image in "[a-f0-9]{64}",
            other_image in "[a-f0-9]{64}",
            video in "https://[a-z]{1,8}/v.mp4",
        ) {
            let image_src = local(&image, "i.png");
            let video_src = remote(&video);
            let key = job_key(&base, &image_src, &video_src);
            let other_key = job_key(&other, &image_src, &video_src);
            prop_assert_eq!(key == other_key, base == other);
            let other_image_key = job_key(&base, &local(&other_image, "i.png"), &video_src);
            prop_assert_eq!(key == other_image_key, image == other_image);
        }

        #[test]
        fn field_boundaries_are_unambiguous(a in ".{0,6}", b in ".{0,6}") {
            // Moving characters between model and prompt must not collide.
            let mut one = settings();
            one.model = format!("{a}{b}").into();
            one.prompt = Some("".into());
            let mut two = settings();
            two.model = a.as_str().into();
            two.prompt = Some(b.as_str().into());
            let video = remote("https://a/v.mp4");
            let image = remote("https://a/x.png");
            prop_assert_eq!(
                job_key(&one, &image, &video) == job_key(&two, &image, &video),
                b.is_empty()
            );
        }
    }
}
