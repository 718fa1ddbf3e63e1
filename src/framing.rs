//! Length-prefixed frames and header+body messages (stub: being written).
