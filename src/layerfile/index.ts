// The Layerfile language: parsing text into typed instructions. The repo graph lives in graph.ts.
export type * from './types.js';
export { parseLayerfile, MAX_SPLIT, type ParseResult } from './parse.js';
export { LayerfileError, type LayerfileErrorInit } from './errors.js';
export { parseSyntax, positionAt, KEYWORDS, type Keyword, type SyntaxNode, type SyntaxTree, type Segment } from './syntax.js';
export { expandEnvValue, canonicalEnvValue, displayEnvValue, parseEnvValue, type EnvValuePart } from './env.js';
export { editDistance, closest } from './suggest.js';
export { splitWords, unquote, quoteWord, type Word } from './words.js';
