#!/usr/bin/env bash
# Regenerates rtpark's default media (media/moh/, media/announcements/) from nothing
# but sox synthesis and espeak-ng speech, so that every file in them is our own work
# (see media/LICENSE). Levels: about -16 LUFS (BS.1770 K-weighted), sample peaks at
# most -1 dBFS; the courtesy tone peaks at -12 dBFS. Deterministic: sox runs in repeatable mode (-R, which seeds the
# pluck voice's noise excitation and the dither), espeak-ng uses one fixed voice, so
# the same tool versions give the same bytes. Safe to run again: it rebuilds both
# folders whole in a scratch directory and then swaps them in; media/README.md and
# media/LICENSE are left alone.
#
#   scripts/make-media.sh            # write into media/
#   MEDIA_OUT=/tmp/m scripts/make-media.sh   # write elsewhere (e.g. to compare)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${MEDIA_OUT:-$ROOT/media}

# --- tools -----------------------------------------------------------------------
have_tools() {
    command -v sox >/dev/null && command -v espeak-ng >/dev/null &&
        sox -h 2>/dev/null | grep -q 'AUDIO FILE FORMATS:.* flac'
}
if ! have_tools; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "make-media: needs sox (with FLAC) and espeak-ng:" \
            "apt-get install sox libsox-fmt-base espeak-ng" >&2
        exit 1
    fi
    echo "make-media: installing sox and espeak-ng" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sox libsox-fmt-base espeak-ng >/dev/null
    have_tools || { echo "make-media: sox/espeak-ng still missing after apt-get" >&2; exit 1; }
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# sox in repeatable mode; any clipping warning is an error (the levels below are set
# so that nothing clips, and a tool change that made something clip should be seen).
sx() {
    local err
    if ! err=$(sox -R "$@" 2>&1); then
        printf '%s\n' "$err" >&2
        return 1
    fi
    if grep -qi 'clip' <<<"$err"; then
        printf 'make-media: clipping in: sox %s\n%s\n' "$*" "$err" >&2
        return 1
    fi
    [ -z "$err" ] || printf '%s\n' "$err" >&2
}

# Frequency in Hz of a note in scientific notation (C4 = middle C, A4 = 440 Hz,
# sharps as '#', flats as 'b'), times an optional multiplier.
hz() {
    awk -v n="$1" -v m="${2:-1}" 'BEGIN {
        split("C C# D D# E F F# G G# A A# B", names, " ")
        for (i = 1; i <= 12; i++) idx[names[i]] = i - 1
        idx["Db"] = 1; idx["Eb"] = 3; idx["Gb"] = 6; idx["Ab"] = 8; idx["Bb"] = 10
        oct = substr(n, length(n)); name = substr(n, 1, length(n) - 1)
        if (!(name in idx)) { print "bad note " n > "/dev/stderr"; exit 1 }
        midi = 12 * (oct + 1) + idx[name]
        printf "%.4f\n", m * 440 * 2 ^ ((midi - 69) / 12)
    }'
}

# Tags written into every file: its title and its licence (see media/LICENSE).
tags() {
    printf '%s\0' --comment "TITLE=$1" \
        --add-comment "COPYRIGHT=CC0 1.0: dedicated to the public domain by the rtpark authors" \
        --add-comment "DESCRIPTION=made by rtpark scripts/make-media.sh (sox, espeak-ng)"
}

# Floating-point intermediates so that nothing is rounded before the end.
FLT=(-e floating-point -b 32)

# note OUT RATE VOICE NOTE LEN GAIN OFFSET: one note, silent for OFFSET seconds first.
#   pluck: plucked string (sox's Karplus-Strong voice, seeded by -R), short release
#   ep:    electric-piano-like tone (1st-3rd harmonics), exponential decay over LEN
#   bell:  brighter version of ep (more 2nd harmonic, a little 4th)
#   bass:  fundamental + 2nd/3rd harmonics so it survives a telephone's 300 Hz cut
#   pad:   two sines detuned by 0.3 Hz (slow beating) + soft triangle + octave, with
#          3 s half-sine fades in and out
note() {
    local out=$1 rate=$2 voice=$3 n=$4 len=$5 gain=$6 off=$7 f
    f=$(hz "$n")
    case $voice in
    pluck)
        sx -r "$rate" -c 1 -n "${FLT[@]}" "$out" synth "$len" pluck "$f" 0 0 50 25 85 \
            fade q 0.004 "$len" 0.3 vol "$gain" pad "$off" ;;
    ep)
        sx -r "$rate" -c 3 -n "${FLT[@]}" "$out" \
            synth "$len" sine "$f" sine "$(hz "$n" 2)" sine "$(hz "$n" 3)" \
            remix 1v0.70,2v0.22,3v0.08 fade q 0.004 fade l 0 "$len" "$(awk -v l="$len" 'BEGIN{print l-0.004}')" \
            vol "$gain" pad "$off" ;;
    bell)
        sx -r "$rate" -c 3 -n "${FLT[@]}" "$out" \
            synth "$len" sine "$f" sine "$(hz "$n" 2)" sine "$(hz "$n" 4)" \
            remix 1v0.62,2v0.30,3v0.08 fade q 0.003 fade l 0 "$len" "$(awk -v l="$len" 'BEGIN{print l-0.003}')" \
            vol "$gain" pad "$off" ;;
    bass)
        sx -r "$rate" -c 3 -n "${FLT[@]}" "$out" \
            synth "$len" sine "$f" sine "$(hz "$n" 2)" sine "$(hz "$n" 3)" \
            remix 1v0.55,2v0.30,3v0.15 fade q 0.01 fade t 0 "$len" "$(awk -v l="$len" 'BEGIN{print l*0.8}')" \
            vol "$gain" pad "$off" ;;
    pad)
        sx -r "$rate" -c 4 -n "${FLT[@]}" "$out" \
            synth "$len" sine "$f" sine "$(awk -v f="$f" 'BEGIN{printf "%.4f", f+0.3}')" \
            triangle "$f" sine "$(hz "$n" 2)" \
            remix 1v0.38,2v0.38,3v0.14,4v0.10 fade h 3 "$len" 3 vol "$gain" pad "$off" ;;
    *) echo "make-media: unknown voice $voice" >&2; return 1 ;;
    esac
}

# Loudness: integrated loudness after ITU-R BS.1770 K-weighting (without its gating,
# which changes little for continuous music and for speech trimmed of its silences),
# measured with sox's biquad and stats effects.
TARGET_LUFS=-16
PEAK_CEILING=-1

kweight() {
    awk -v fs="$1" 'BEGIN {
        pi = atan2(0, -1)
        # stage 1: high shelf, +4 dB above ~1.7 kHz (the head)
        G = 3.99984385397; Q = 0.7071752369554193; fc = 1681.9744509555319
        A = 10 ^ (G / 40); w = 2 * pi * fc / fs; al = sin(w) / (2 * Q); c = cos(w); r = 2 * sqrt(A) * al
        printf "biquad %.12f %.12f %.12f %.12f %.12f %.12f ", \
            A * ((A + 1) + (A - 1) * c + r), -2 * A * ((A - 1) + (A + 1) * c), A * ((A + 1) + (A - 1) * c - r), \
            (A + 1) - (A - 1) * c + r, 2 * ((A - 1) - (A + 1) * c), (A + 1) - (A - 1) * c - r
        # stage 2: high pass at ~38 Hz
        Q = 0.5003270373253953; fc = 38.13547087613982
        w = 2 * pi * fc / fs; al = sin(w) / (2 * Q); c = cos(w)
        printf "biquad %.12f %.12f %.12f %.12f %.12f %.12f\n", \
            (1 + c) / 2, -(1 + c), (1 + c) / 2, 1 + al, -2 * c, 1 - al
    }'
}

# loudness_gain FILE: the gain in dB that brings FILE to TARGET_LUFS, or less if that
# would put its peak above PEAK_CEILING dBFS.
loudness_gain() {
    local f=$1 fs rms pk
    fs=$(soxi -r "$f")
    # -10 dB first so that the shelf cannot clip; added back below.
    # shellcheck disable=SC2046
    rms=$(sox "$f" -n gain -10 $(kweight "$fs") stats 2>&1 | awk '$1 == "RMS" && $2 == "lev" {print $4}')
    pk=$(sox "$f" -n stats 2>&1 | awk '$1 == "Pk" && $2 == "lev" {print $4}')
    awk -v r="$rms" -v p="$pk" -v t="$TARGET_LUFS" -v c="$PEAK_CEILING" 'BEGIN {
        g = t - (r + 10 - 0.691); if (p + g > c) g = c - p; printf "%.3f\n", g }'
}

# mix OUT IN...: sum the inputs at unit gain (sox -m would scale each by 1/n).
mix() {
    local out=$1 args=() f
    shift
    if [ $# -eq 1 ]; then cp "$1" "$out"; return; fi
    for f in "$@"; do args+=(-v 1 "$f"); done
    sx -m "${args[@]}" "${FLT[@]}" "$out"
}

# render_loop NAME RATE LOOP_SECS CHUNK_SECS OUT.flac TITLE EFFECT... < events
# Each event line is "START VOICE NOTE LEN GAIN". Notes are rendered and summed per
# CHUNK_SECS chunk (to keep scratch files small), the chunks summed into one timeline
# that runs past LOOP_SECS by the notes' and the reverb's tails, filtered,
# reverberated and resampled to RATE there (notes are made at 48 kHz, which sox's
# pluck voice needs), and then the part after LOOP_SECS is added onto the start. The
# result is what the music sounds like when it repeats, so the file loops without a
# click or a gap, and the reverb tail of the last bars carries into the first.
render_loop() {
    local name=$1 rate=$2 loop=$3 chunk=$4 out=$5 title=$6 tag
    shift 6
    local dir=$TMP/$name start voice n len gain c k off i chunks=() files
    mkdir -p "$dir"
    while read -r start voice n len gain; do
        [ -n "$start" ] || continue
        c=$(awk -v s="$start" -v c="$chunk" 'BEGIN{printf "%03d", int(s/c + 1e-9)}')
        echo "$start $voice $n $len $gain" >>"$dir/c$c.events"
    done
    for c in "$dir"/c*.events; do
        k=${c##*/c}; k=${k%.events}
        mkdir "$dir/notes"
        i=0
        while read -r start voice n len gain; do
            off=$(awk -v s="$start" -v c="$chunk" -v k="$k" 'BEGIN{printf "%.6f", s - k*c}')
            note "$dir/notes/$(printf %04d $i).wav" 48000 "$voice" "$n" "$len" "$gain" "$off"
            i=$((i + 1))
        done <"$c"
        files=("$dir"/notes/*.wav)
        mix "$dir/sum.wav" "${files[@]}"
        rm -r "$dir/notes"
        off=$(awk -v k="$k" -v c="$chunk" 'BEGIN{printf "%.6f", k*c}')
        sx "$dir/sum.wav" "${FLT[@]}" "$dir/chunk$k.wav" pad "$off"
        chunks+=("$dir/chunk$k.wav")
    done
    mix "$dir/dry.wav" "${chunks[@]}"
    rm "${chunks[@]}"
    # 5 s of room for the reverb tail; the filters go here too (before the wrap) so
    # that their start-up does not show at the loop point.
    sx "$dir/dry.wav" "${FLT[@]}" "$dir/wet.wav" pad 0 5 highpass 40 "$@" rate -v "$rate"
    sx "$dir/wet.wav" "${FLT[@]}" "$dir/head.wav" trim 0 "$loop"
    sx "$dir/wet.wav" "${FLT[@]}" "$dir/tail.wav" trim "$loop"
    mix "$dir/loop.wav" "$dir/head.wav" "$dir/tail.wav"
    rm "$dir/dry.wav" "$dir/wet.wav" "$dir/head.wav" "$dir/tail.wav"
    mapfile -d '' tag < <(tags "$title")
    sx "$dir/loop.wav" -b 16 -C 8 "${tag[@]}" "$out" gain "$(loudness_gain "$dir/loop.wav")"
}

# Event lists --------------------------------------------------------------------

# default/01: C major, 96 bpm 4/4, eight chords of two bars (5 s), 40 s. A plucked
# up-and-down arpeggio in eighths, an electric-piano melody in half-bars, a bass on
# each half-bar and a quiet sine pad holding each chord.
events_arpeggio() {
    local beat=0.625 k=0 chord arp bass pad mel t i j a b p m
    local chords=(
        "C4 G4 C5 E5 G5|C3 G2|C4 E4 G4|E5 G5 E5 D5"
        "A3 E4 A4 C5 E5|A2 E3|A3 C4 E4|C5 E5 A5 G5"
        "F3 C4 F4 A4 C5|F2 C3|F3 A3 C4|F5 E5 C5 A4"
        "G3 D4 G4 B4 D5|G2 D3|G3 B3 D4|B4 D5 G5 F5"
        "C4 G4 C5 E5 G5|C3 G2|C4 E4 G4|E5 G5 C6 B5"
        "E3 B3 E4 G4 B4|E2 B2|E3 G3 B3|B5 G5 E5 G5"
        "F3 C4 F4 A4 C5|F2 C3|F3 A3 C4|A5 F5 C5 F5"
        "G3 D4 F4 B4 D5|G2 D3|G3 B3 D4|G5 F5 D5 B4"
    )
    local pattern=(0 1 2 3 4 3 2 1 0 1 2 3 4 3 2 1)
    for chord in "${chords[@]}"; do
        IFS='|' read -r arp bass pad mel <<<"$chord"
        read -ra a <<<"$arp"; read -ra b <<<"$bass"; read -ra p <<<"$pad"; read -ra m <<<"$mel"
        t=$(awk -v k=$k -v b=$beat 'BEGIN{print k*8*b}')
        for i in "${!pattern[@]}"; do
            echo "$(awk -v t="$t" -v i=$i -v b=$beat 'BEGIN{print t+i*b/2}') pluck ${a[${pattern[$i]}]} 1.6 0.085"
        done
        for i in 0 1 2 3; do
            echo "$(awk -v t="$t" -v i=$i -v b=$beat 'BEGIN{print t+i*2*b}') bass ${b[$((i % 2))]} 1.3 0.11"
            echo "$(awk -v t="$t" -v i=$i -v b=$beat 'BEGIN{print t+i*2*b}') ep ${m[$i]} 1.6 0.075"
        done
        for j in "${p[@]}"; do
            echo "$t pad $j 6.5 0.028"
        done
        k=$((k + 1))
    done
}

# default/02: F major music-box waltz, 80 bpm 3/4, eight chords of two bars (4.5 s),
# 36 s. Bass on each downbeat, bell chords on beats two and three, a bell melody
# (dotted half, then three quarters) over each chord.
events_waltz() {
    local beat=0.75 k=0 chord bass tri mel t i j n b c m
    local chords=(
        "F2 C3|F4 A4 C5|A5 G5 F5 C5"
        "D3 A2|D4 F4 A4|D5 F5 A5 F5"
        "G2 D3|G4 Bb4 D5|Bb5 A5 G5 D5"
        "C3 G2|E4 G4 C5|E5 G5 C6 Bb5"
        "F2 C3|F4 A4 C5|A5 C6 A5 F5"
        "A2 E3|E4 A4 C5|C6 A5 E5 A5"
        "Bb2 F2|F4 Bb4 D5|D6 C6 Bb5 F5"
        "C3 G2|E4 G4 Bb4|E5 G5 Bb5 G5"
    )
    local mel_at=(0 3 4 5)
    for chord in "${chords[@]}"; do
        IFS='|' read -r bass tri mel <<<"$chord"
        read -ra b <<<"$bass"; read -ra c <<<"$tri"; read -ra m <<<"$mel"
        t=$(awk -v k=$k -v b=$beat 'BEGIN{print k*6*b}')
        for i in 0 1; do
            echo "$(awk -v t="$t" -v i=$i -v b=$beat 'BEGIN{print t+i*3*b}') bass ${b[$i]} 2.0 0.12"
            for j in 1 2; do
                for n in "${c[@]}"; do
                    echo "$(awk -v t="$t" -v i=$i -v j=$j -v b=$beat 'BEGIN{print t+(i*3+j)*b}') bell $n 1.0 0.035"
                done
            done
        done
        for i in 0 1 2 3; do
            echo "$(awk -v t="$t" -v i="${mel_at[$i]}" -v b=$beat 'BEGIN{print t+i*b}') bell ${m[$i]} 2.2 0.10"
        done
        k=$((k + 1))
    done
}

# calm/01: D major pad, four chords of 7.5 s crossfading over 3 s, 30 s.
events_pad() {
    local k=0 chord n
    local chords=(
        "D3 A3 E4 F#4 A4"
        "B2 F#3 A3 D4 C#5"
        "G2 D3 B3 F#4 A4"
        "A2 E3 B3 E4 C#5"
    )
    for chord in "${chords[@]}"; do
        for n in $chord; do
            echo "$(awk -v k=$k 'BEGIN{print k*7.5}') pad $n 10.5 0.07"
        done
        k=$((k + 1))
    done
}

# Speech -----------------------------------------------------------------------------
VOICE=(-v en-us -s 150)
# A gentle peak compressor (2:1 above -12 dB, 2 ms look-ahead) so that speech can
# reach the loudness target without its peaks passing the ceiling.
SPEECH_COMPAND=(compand 0.002,0.08 6:-12,-12,0,-6 0 -90 0.002)

# say OUT TEXT: espeak-ng at 22.05 kHz -> 16 kHz mono; DC and rumble filtered out,
# leading/trailing silence trimmed to 50 ms, gently compressed, then brought to about
# TARGET_LUFS with the peak at most PEAK_CEILING.
say() {
    local out=$1 text=$2 raw=$TMP/say.wav tag
    espeak-ng "${VOICE[@]}" -w "$raw" "$text"
    sx "$raw" "${FLT[@]}" "$TMP/trimmed.wav" highpass 70 rate -v 16k gain -n \
        silence 1 0.002 -55d reverse silence 1 0.002 -55d reverse
    sx "$TMP/trimmed.wav" "${FLT[@]}" "$TMP/shaped.wav" fade q 0.005 -0 0.005 pad 0.05 0.05 "${SPEECH_COMPAND[@]}"
    mapfile -d '' tag < <(tags "${text%[.,]}")
    sx "$TMP/shaped.wav" -b 16 -C 8 "${tag[@]}" "$out" gain "$(loudness_gain "$TMP/shaped.wav")"
}

# Build ---------------------------------------------------------------------------
NEW=$TMP/new
mkdir -p "$NEW/moh/default" "$NEW/moh/calm" "$NEW/announcements/digits"

echo "make-media: moh/default/01-arpeggio.flac" >&2
events_arpeggio | render_loop arpeggio 24000 40 5 "$NEW/moh/default/01-arpeggio.flac" \
    "rtpark hold music: arpeggio (C major, 40 s loop)" \
    lowpass 6000 reverb 45 60 80 100 12 -4
echo "make-media: moh/default/02-waltz.flac" >&2
events_waltz | render_loop waltz 24000 36 4.5 "$NEW/moh/default/02-waltz.flac" \
    "rtpark hold music: waltz (F major, 36 s loop)" \
    lowpass 6000 reverb 55 50 90 100 15 -3
echo "make-media: moh/calm/01-pad.flac" >&2
events_pad | render_loop pad 24000 30 7.5 "$NEW/moh/calm/01-pad.flac" \
    "rtpark hold music: calm pad (D major, 30 s loop)" \
    lowpass 2500 reverb 70 70 100 100 20 -2

echo "make-media: announcements" >&2
say "$NEW/announcements/please-hold.flac" "Please hold."
say "$NEW/announcements/parked-on-slot.flac" "You have been parked on slot,"
say "$NEW/announcements/party-returned.flac" "The party you were holding has returned."
words=(zero one two three four five six seven eight nine)
for d in "${!words[@]}"; do
    say "$NEW/announcements/digits/$d.flac" "${words[$d]}."
done

# Courtesy tone: two 120 ms beeps at 880 Hz (A5) 100 ms apart, 5 ms ramps, peak
# -12 dBFS (a pure tone that loud is about as loud as the speech), 50 ms lead/tail.
sx -r 16000 -c 1 -n "${FLT[@]}" "$TMP/beep.wav" synth 0.12 sine 880 fade q 0.005 0.12 0.005
sx -r 16000 -c 1 -n "${FLT[@]}" "$TMP/gap.wav" trim 0 0.1
mapfile -d '' tag < <(tags "rtpark courtesy tone")
sx "$TMP/beep.wav" "$TMP/gap.wav" "$TMP/beep.wav" -b 16 -C 8 "${tag[@]}" \
    "$NEW/announcements/courtesy-tone.flac" gain -n -12 pad 0.05 0.05

# Swap the new folders in whole.
mkdir -p "$OUT"
rm -rf "$OUT/moh" "$OUT/announcements"
mv "$NEW/moh" "$NEW/announcements" "$OUT/"
echo "make-media: done in $OUT" >&2
