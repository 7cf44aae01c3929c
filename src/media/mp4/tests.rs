use super::moov::duration_ms;
use super::*;

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
    let mut body = vec![0u8; 100];
    body[12..16].copy_from_slice(&timescale.to_be_bytes());
    body[16..20].copy_from_slice(&duration.to_be_bytes());
    mp4_box(b"mvhd", &body)
}

fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
    let mut body = vec![0u8; 112];
    body[0] = 1;
    body[20..24].copy_from_slice(&timescale.to_be_bytes());
    body[24..32].copy_from_slice(&duration.to_be_bytes());
    mp4_box(b"mvhd", &body)
}

fn video_trak(version: u8, width: u32, height: u32) -> Vec<u8> {
    let (len, at) = if version == 0 { (84, 76) } else { (96, 88) };
    let mut tkhd = vec![0u8; len];
    tkhd[0] = version;
    tkhd[at..at + 4].copy_from_slice(&(width << 16).to_be_bytes());
    tkhd[at + 4..at + 8].copy_from_slice(&(height << 16).to_be_bytes());
    let mut hdlr = vec![0u8; 24];
    hdlr[8..12].copy_from_slice(b"vide");
    let mdia = mp4_box(b"mdia", &mp4_box(b"hdlr", &hdlr));
    mp4_box(b"trak", &[mp4_box(b"tkhd", &tkhd), mdia].concat())
}

fn ftyp(major: &[u8; 4]) -> Vec<u8> {
    mp4_box(b"ftyp", &[&major[..], &[0, 0, 2, 0], b"isom"].concat())
}

fn movie(mvhd: Vec<u8>) -> Vec<u8> {
    let moov = mp4_box(b"moov", &[mvhd, video_trak(0, 640, 360)].concat());
    [ftyp(b"isom"), moov, mp4_box(b"mdat", &[0; 32])].concat()
}

#[test]
fn duration_rounds_up_to_the_millisecond() {
    assert_eq!(duration_ms(6000, 1000).unwrap(), 6000);
    assert_eq!(duration_ms(1, 90_000).unwrap(), 1);
    assert_eq!(duration_ms(90_001, 90_000).unwrap(), 1001);
    assert_eq!(duration_ms(u64::MAX, 1).ok(), None);
    assert!(duration_ms(5, 0).is_err());
}

#[test]
fn mvhd_versions_0_and_1() {
    let v0 = probe_bytes(&movie(mvhd_v0(600, 3001))).unwrap();
    assert_eq!(v0.duration_ms, 5002);
    let v1 = probe_bytes(&movie(mvhd_v1(48_000, 48_000 * 7))).unwrap();
    assert_eq!(v1.duration_ms, 7000);
    assert_eq!(
        (v1.width, v1.height, v1.container),
        (640, 360, Container::Mp4)
    );
}

#[test]
fn unknown_duration_is_refused_not_guessed() {
    let err = probe_bytes(&movie(mvhd_v0(1000, u32::MAX))).unwrap_err();
    assert!(matches!(err, MediaError::NotAVideo(m) if m.contains("no duration")));
}

#[test]
fn tkhd_version_1() {
    let moov = mp4_box(
        b"moov",
        &[mvhd_v0(1000, 4000), video_trak(1, 1920, 1080)].concat(),
    );
    let info = probe_bytes(&[ftyp(b"qt  "), moov].concat()).unwrap();
    assert_eq!(
        (info.width, info.height, info.container),
        (1920, 1080, Container::Mov)
    );
}

#[test]
fn large_size_and_size_zero_boxes() {
    let moov = mp4_box(
        b"moov",
        &[mvhd_v0(1000, 4000), video_trak(0, 400, 400)].concat(),
    );
    let mut wide_mdat = 24u32.to_be_bytes().to_vec();
    wide_mdat.extend_from_slice(b"free");
    wide_mdat.extend_from_slice(&[0; 16]);
    // A 64-bit-size box, then a size-0 box that runs to the end.
    let mut large = 1u32.to_be_bytes().to_vec();
    large.extend_from_slice(b"mdat");
    large.extend_from_slice(&24u64.to_be_bytes());
    large.extend_from_slice(&[0; 8]);
    let mut to_end = 0u32.to_be_bytes().to_vec();
    to_end.extend_from_slice(b"mdat");
    to_end.extend_from_slice(&[7; 100]);
    let file = [ftyp(b"isom"), wide_mdat, large, moov, to_end].concat();
    let info = probe_bytes(&file).unwrap();
    assert_eq!(info.duration_ms, 4000);
    assert_eq!(info.size_bytes, file.len() as u64);
}

#[test]
fn oversized_boxes_are_truncation() {
    let mut file = movie(mvhd_v0(1000, 4000));
    file.truncate(file.len() - 1);
    let err = probe_bytes(&file).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains("`mdat`"), "{err}");

    let mut huge = ftyp(b"isom");
    huge.extend_from_slice(&1u32.to_be_bytes());
    huge.extend_from_slice(b"mdat");
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert!(
        probe_bytes(&huge)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
}

#[test]
fn box_smaller_than_its_header() {
    let mut file = ftyp(b"isom");
    file.extend_from_slice(&4u32.to_be_bytes());
    file.extend_from_slice(b"free");
    let err = probe_bytes(&file).unwrap_err().to_string();
    assert!(err.contains("less than its own header"), "{err}");
}

#[test]
fn no_moov_no_video_track() {
    let file = [ftyp(b"isom"), mp4_box(b"mdat", &[0; 10])].concat();
    assert!(matches!(probe_bytes(&file), Err(MediaError::NotAVideo(m)) if m.contains("moov")));
    let moov = mp4_box(b"moov", &mvhd_v0(1000, 4000));
    let file = [ftyp(b"isom"), moov].concat();
    assert!(
        matches!(probe_bytes(&file), Err(MediaError::NotAVideo(m)) if m.contains("no video track"))
    );
}

#[test]
fn heif_and_garbage_are_named() {
    let heic = [ftyp(b"heic"), mp4_box(b"meta", &[0; 4])].concat();
    let err = probe_bytes(&heic).unwrap_err().to_string();
    assert!(err.contains("HEIF/HEIC image"), "{err}");
    let err = probe_bytes(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09")
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("01 02 03"),
        "foreign bytes are never quoted: {err}"
    );
    let err = probe_bytes(b"GIF").unwrap_err().to_string();
    assert!(err.contains("no MP4/MOV box structure"), "{err}");
    assert!(matches!(probe_bytes(b""), Err(MediaError::Empty)));
}

#[test]
fn walk_reads_move_forward() {
    let file = movie(mvhd_v0(1000, 4000));
    let mut walk = Walk::new(file.len() as u64, false).unwrap();
    let mut last_end = 0;
    loop {
        let read = walk.next_read();
        assert!(
            read.offset >= last_end,
            "{read:?} goes back before {last_end}"
        );
        last_end = read.offset + read.len as u64;
        let data = &file[read.offset as usize..last_end as usize];
        if walk.feed(data).unwrap().is_some() {
            break;
        }
    }
}
