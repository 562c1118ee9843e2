#!/usr/bin/env bash
# Makes the before/after pictures of docs/ with a running pixfork, so they
# show what the service itself produces: ./scripts/docs-pictures.sh [URL]
# (default http://127.0.0.1:8080). The overlay pictures need the server
# started with `--overlay badge=docs/badge.png`; that PNG is the service's
# own rendering of docs/src/badge.svg (`convert?format=png`), made by this
# script when it is missing (then restart the server with the flag and
# run the script again).
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:-http://127.0.0.1:8080}
photo=../shared/corpus/valid/jpeg/photo_portrait_800x533_baseline.jpg
post() { curl -fsS --data-binary "@$1" "$url/v1/$2" -o "docs/$3"; }

if [ ! -f docs/badge.png ]; then
    post docs/src/badge.svg 'convert?format=png' badge.png
    echo "docs/badge.png made: restart pixfork with --overlay badge=docs/badge.png and run again"
    exit 0
fi
post "$photo" 'resize?width=320' before.jpg
post "$photo" 'resize?width=200&height=200&fit=cover&gravity=smart' resize_cover_smart.jpg
post "$photo" 'pipeline?ops=resize(width=320),blur(sigma=4)' blur.jpg
post "$photo" 'pipeline?ops=resize(width=320),pixelate(size=12)' pixelate.jpg
post "$photo" 'pipeline?ops=resize(width=320),sepia' sepia.jpg
post "$photo" 'pipeline?ops=resize(width=320),rotate(angle=30,background=ffffff)' rotate30.jpg
# Overlays: a corner badge, and the same badge tiled faintly.
post "$photo" 'pipeline?ops=resize(width=320),overlay(image=badge,gravity=southeast,x=12,y=12,scale=0.3)' overlay.jpg
post "$photo" 'pipeline?ops=resize(width=320),overlay(image=badge,tile=true,opacity=0.25,scale=0.2)' overlay_tiled.jpg
# A wide crop: the centre cuts through the chest, the focal point keeps the face.
post "$photo" 'thumbnail?width=320&height=100' crop_centre.jpg
post "$photo" 'thumbnail?width=320&height=100&gravity=focal&fx=0.5&fy=0.3' crop_focal.jpg
echo "docs/: pictures written from $url"
