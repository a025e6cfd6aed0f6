/**
 * The single-thread paravirtual RDMA world now lives in fuzz/rdma/PvWorld.ts (the fuzzer's rdma
 * target drives it too); the backend tests keep importing it from here.
 */

export * from '../../../../fuzz/rdma/PvWorld.js';
