#!/usr/bin/env bash
# covers.sh OUT - the cover test set of the similarity lane: planetblupi's
# music as recordings (planetblupi-music-ogg, the "originals" to index) and as
# MIDI (planetblupi-music-midi) rendered by fluidsynth with two General MIDI
# soundfonts, the second rendering also 8% slower and 3 semitones higher.
# Writes OUT/originals/*.ogg, OUT/rendered/*.wav and OUT/covers.csv
# (file,original) for `earmark eval-covers`.
set -euo pipefail
out=$(realpath -m "$1")
need=()
for p in fluidsynth fluid-soundfont-gm timgm6mb-soundfont sox; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get install -y -q "${need[@]}"
fi
mkdir -p "$out/debs" "$out/originals" "$out/rendered"
(cd "$out/debs" && apt-get download planetblupi-music-ogg planetblupi-music-midi)
for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/debs/x"; done
music=$out/debs/x/usr/share/planetblupi/music
cp "$music"/*.ogg "$out/originals/"
echo "file,original" >"$out/covers.csv"
for mid in "$music"/*.mid; do
    name=$(basename "$mid" .mid)
    for sf in FluidR3_GM TimGM6mb; do
        fluidsynth -ni -q -F "$out/rendered/$name-$sf.wav" -r 44100 \
            "/usr/share/sounds/sf2/$sf.sf2" "$mid" >/dev/null
        echo "rendered/$name-$sf.wav,$name" >>"$out/covers.csv"
    done
    sox "$out/rendered/$name-TimGM6mb.wav" "$out/rendered/$name-TimGM6mb-t092p300.wav" \
        tempo 0.92 pitch 300
    echo "rendered/$name-TimGM6mb-t092p300.wav,$name" >>"$out/covers.csv"
done
echo "covers: $out/covers.csv; index $out/originals with the catalog, then"
echo "  earmark eval-covers --db DB --truth $out/covers.csv"
