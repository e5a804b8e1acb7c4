#!/bin/sh
# Removes what the macOS package installed: stops the publisher, removes its LaunchDaemon, the
# files under /opt/aws/amazon-cloudwatch-publisher, the service user and group _cwpublisher,
# and the package's receipt.
#
#   sudo /opt/aws/amazon-cloudwatch-publisher/bin/uninstall.sh [--keep-config | --purge]
#
# --keep-config keeps etc/ (the config), logs/ and state/ (the saved log positions and the
# metrics spool), so a new install carries on from them; --purge deletes them too. Without
# either it asks, or keeps them when there is no terminal to ask on.
set -eu

LABEL=com.amazonaws.amazon-cloudwatch-publisher
PACKAGE_ID=com.amazonaws.amazon-cloudwatch-publisher
SERVICE=_cwpublisher
BASE=/opt/aws/amazon-cloudwatch-publisher
PLIST=/Library/LaunchDaemons/$LABEL.plist

usage() {
    echo "usage: sudo $0 [--keep-config | --purge]"
}

keep=""
for arg in "$@"; do
    case $arg in
        --keep-config) keep=yes ;;
        --purge) keep=no ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            exit 64
            ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: run it as root: sudo $0 $*" >&2
    exit 1
fi

if [ -z "$keep" ]; then
    keep=yes
    if [ -t 0 ]; then
        printf 'Delete the config (with its password), the logs and the saved state as well? [y/N] '
        read -r answer || answer=""
        case $answer in
            [yY]*) keep=no ;;
        esac
    fi
fi

launchctl bootout "system/$LABEL" 2>/dev/null || true
# Forget the "disabled" mark an unconfigured install leaves.
launchctl enable "system/$LABEL" 2>/dev/null || true
rm -f "$PLIST"

if [ "$keep" = yes ]; then
    rm -rf "${BASE:?}/bin" "${BASE:?}/share"
    echo "Kept $BASE/etc, $BASE/logs and $BASE/state; delete them with: sudo rm -rf $BASE"
else
    rm -rf "$BASE"
    rmdir /opt/aws 2>/dev/null || true
fi

if dscl . -read "/Users/$SERVICE" >/dev/null 2>&1; then
    dscl . -delete "/Users/$SERVICE"
fi
if dscl . -read "/Groups/$SERVICE" >/dev/null 2>&1; then
    dscl . -delete "/Groups/$SERVICE"
fi
pkgutil --forget "$PACKAGE_ID" >/dev/null 2>&1 || true
echo "amazon-cloudwatch-publisher is uninstalled."
