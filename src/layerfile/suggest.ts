// Did-you-mean suggestions for misspelt directives and words.

/**
 * Edit distance between two strings: insertions, deletions, substitutions and transpositions of two
 * adjacent characters each cost 1 (the "optimal string alignment" form of Damerau-Levenshtein, which
 * is what typos look like: `RUNN`, `FORM`, `WEBSTIE`).
 */
export function editDistance(a: string, b: string): number {
  // Three rolling rows: the transposition step looks two rows back.
  let twoBack: number[] = [];
  let previous: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (twoBack[j - 2] ?? 0) + 1);
      }
      current.push(best);
    }
    twoBack = previous;
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** How far a word may be from a candidate and still be suggested: about one typo per three letters. */
export function maxSuggestionDistance(word: string): number {
  return Math.max(1, Math.min(3, Math.floor(word.length / 3)));
}

/**
 * The candidate closest to `word`, compared case-insensitively (so `run` suggests `RUN`), or undefined
 * when nothing is close enough. Ties go to the earlier candidate.
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const upper = word.toUpperCase();
  let best: string | undefined;
  let bestDistance = maxSuggestionDistance(word) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(upper, candidate.toUpperCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
