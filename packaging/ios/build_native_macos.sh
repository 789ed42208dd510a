#!/usr/bin/env bash
# On-device route (not Pyto): build llama.cpp as an XCFramework with Metal and the multimodal library (mtmd), for a
# native host app (Xcode or BeeWare Briefcase) that embeds it. macOS with Xcode only. Not run by this project's CI:
# nothing here has been verified beyond printing the steps (--dry-run).
#   packaging/ios/build_native_macos.sh [--dry-run] [LLAMA_CPP_DIR]
set -euo pipefail
dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then dry_run=1; shift; fi
llama_dir="${1:-llama.cpp}"
run() { echo "+ $*"; if [[ $dry_run == 0 ]]; then "$@"; fi; }

if [[ $dry_run == 0 && "$(uname -s)" != "Darwin" ]]; then
    echo "build_native_macos.sh: needs macOS with Xcode (found $(uname -s)); use --dry-run to see the steps" >&2
    exit 2
fi
if [[ $dry_run == 0 ]] && ! xcode-select -p >/dev/null 2>&1; then
    echo "build_native_macos.sh: Xcode command line tools are missing (xcode-select --install)" >&2
    exit 2
fi
if [[ $dry_run == 0 && ! -d "$llama_dir" ]]; then
    echo "build_native_macos.sh: no llama.cpp source at $llama_dir: clone ggml-org/llama.cpp there first" >&2
    exit 2
fi
# build-xcframework.sh builds iOS, simulator and macOS slices with Metal; LLAMA_BUILD_MTMD adds libmtmd (vision),
# which LlavaCam's engine needs (see llama.cpp#21935).
run env LLAMA_BUILD_MTMD=ON bash -c "cd '$llama_dir' && ./build-xcframework.sh"
echo "Embed $llama_dir/build-apple/llama.xcframework in the host app and load it from Python with ctypes" \
     "(MTMD_CPP_LIB / LLAMA_CPP_LIB point llama-cpp-python at the libraries)."
