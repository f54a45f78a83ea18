#!/bin/sh
# Renders src/index.html into dist/, filling in the title and version from config.json (with jq).
set -eu
title=$(jq -r .title config.json)
version=$(jq -r .version config.json)
mkdir -p dist
sed -e "s/{{title}}/$title/" -e "s/{{version}}/$version/" -e "s/{{env}}/$APP_ENV/" src/index.html > dist/index.html
echo "built dist/index.html: $title $version"
