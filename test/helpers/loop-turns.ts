/**
 * Counts turns of the event loop while some work runs: a chain of
 * immediates, one a turn, standing for the callbacks (a DNS socket's) that
 * work done in one go would keep waiting. `stop()` ends the chain and says
 * how many turns it saw.
 */
export function countLoopTurns(): { stop: () => number } {
  let turns = 0;
  let beating = true;
  const beat = () => {
    turns++;
    if (beating) setImmediate(beat);
  };
  setImmediate(beat);
  return {
    stop: () => {
      beating = false;
      return turns;
    },
  };
}
