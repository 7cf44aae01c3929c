#!/usr/bin/env bash
# Makes the small real media files the tests and the example use. Run once; the outputs are
# committed, so neither CI nor a user needs ffmpeg. Needs: ffmpeg (Debian package `ffmpeg`).
set -euo pipefail
cd "$(dirname "$0")/.."
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
clip() { # clip OUT SECONDS WxH [extra args]
  local out=$1 secs=$2 size=$3; shift 3
  ff -f lavfi -i "testsrc2=size=${size}:rate=12:duration=${secs}" \
     -f lavfi -i "sine=frequency=440:sample_rate=22050:duration=${secs}" \
     -c:v libx264 -preset veryfast -crf 38 -pix_fmt yuv420p -c:a aac -b:a 24k -ac 1 \
     -t "$secs" "$@" "$out"
}
img() { # img OUT WxH
  ff -f lavfi -i "testsrc=size=$2:rate=1:duration=1" -frames:v 1 "$1"
}

E=examples; F=tests/fixtures/media
mkdir -p $E/media $E/subjects $F

clip $E/media/dance-5s.mp4 5 360x640 -movflags +faststart
img $E/subjects/fox.png 400x600
img $E/subjects/owl.jpg 480x640
img $E/subjects/robot.webp 400x500

clip $F/ref-6s.mp4 6 360x640 -movflags +faststart
clip $F/ref-6s-moov-at-end.mp4 6 360x640
clip $F/ref-4s.mov 4 360x640 -f mov
clip $F/long-12s.mp4 12 360x640 -movflags +faststart
clip $F/short-2s.mp4 2 360x640 -movflags +faststart
ff -f lavfi -i "testsrc2=size=360x640:rate=12:duration=5" -c:v libx264 -preset veryfast -crf 38 \
   -pix_fmt yuv420p -movflags +faststart $F/silent-5s.mp4
clip $F/tiny-video-200.mp4 4 200x200 -movflags +faststart
img $F/subject.png 400x600
img $F/subject.jpg 480x640
img $F/subject.webp 400x500
img $F/too-small-200.png 200x200
img $F/too-wide-1200x300.png 1200x300
head -c 600 $F/subject.png > $F/truncated.png
head -c 3000 $F/ref-6s.mp4 > $F/truncated.mp4
cp $F/subject.png $F/png-pretending.mp4
cp $F/subject.png $F/png-pretending.jpg
: > $F/empty.mp4

# The benchmarks' reference clip: 4 s, 340 x 340, about 2 KB, so 100,000 downloads stay small.
ff -f lavfi -i color=c=gray:s=340x340:r=5:d=4 -c:v libx264 -preset veryslow -crf 51 \
   -pix_fmt yuv420p -movflags +faststart $F/solid-4s.mp4
