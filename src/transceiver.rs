//! Seed 001's Transceiver (stub: being written).
