// Whether to colour a stream: FORCE_COLOR (not "0") forces it, NO_COLOR turns it off, otherwise only a
// TTY gets colour. picocolors' own default also colours whenever a CI variable is set, which would put
// escape codes into logs that CI systems and scripts read as plain text.
import pc from 'picocolors';

export type Colors = ReturnType<typeof pc.createColors>;

export function wantsColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  const forced = env.FORCE_COLOR;
  if (forced !== undefined && forced !== '' && forced !== '0' && forced !== 'false') return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return Boolean(stream.isTTY);
}

export function colorsFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Colors {
  return pc.createColors(wantsColor(stream, env));
}
