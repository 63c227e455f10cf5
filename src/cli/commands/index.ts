import { registerPort } from './port.js';
import { registerDecode } from './decode.js';
import { registerCheck } from './check.js';
import { registerOrder } from './order.js';
import { registerCompose } from './compose.js';
import { registerInventory } from './inventory.js';
import { registerFleet } from './fleet.js';
import { registerServe } from './serve.js';
import { registerResolve } from './resolve.js';
import { registerXdsBootstrap } from './xds-bootstrap.js';
import { registerDrain } from './drain.js';

import type { RegisterCommand } from '../io.js';

export type { RegisterCommand };

/** Every subcommand, in help order. One line per command module. */
export const commands: RegisterCommand[] = [
  registerPort,
  registerDecode,
  registerCheck,
  registerOrder,
  registerCompose,
  registerServe,
  registerResolve,
  registerInventory,
  registerFleet,
  registerDrain,
  registerXdsBootstrap,
];
