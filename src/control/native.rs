//! The native protocol: JSON lines over a Unix stream socket (docs/native-protocol.md).
