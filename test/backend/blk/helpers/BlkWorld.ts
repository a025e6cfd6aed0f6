/**
 * The one-thread blkback world moved to fuzz/blk/BlkWorld.ts (the blk fuzz target builds on it);
 * the blkback tests keep importing it from here.
 */

export { BlkWorld, type BlkWorldOptions, type Dom, rawRequest } from '../../../../fuzz/blk/BlkWorld.js';
