//! DMA throughput workloads of SPEC §8 (in progress).
