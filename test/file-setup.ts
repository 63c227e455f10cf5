import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers/temp.js';

/**
 * Runs in every test file before its tests (vitest.config.ts setupFiles).
 * Hooks run as a stack, so this afterAll comes after the file's own.
 */
afterAll(removeTempDirs);
