//! STS evaluation for sbert (in progress).
