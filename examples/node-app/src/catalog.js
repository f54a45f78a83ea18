import { readFileSync } from 'node:fs';
import { slugify } from './slug.js';

// The catalog is a JSON list of { name, price, tags }; each product gets its slug.
export function loadCatalog(path) {
  const products = JSON.parse(readFileSync(path, 'utf8'));
  return products.map((product) => ({ ...product, slug: slugify(product.name) }));
}

export function byTag(catalog, tag) {
  return catalog.filter((product) => product.tags.includes(tag)).map((product) => product.slug);
}
