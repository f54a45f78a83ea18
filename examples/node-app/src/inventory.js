// Stock levels per SKU; reservations fail rather than go below zero.
export function createInventory(levels = {}) {
  return new Map(Object.entries(levels));
}

export function reserve(inventory, sku, quantity) {
  const available = inventory.get(sku) ?? 0;
  if (quantity > available) return { ok: false, missing: quantity - available };
  inventory.set(sku, available - quantity);
  return { ok: true, left: available - quantity };
}

export function lowStock(inventory, threshold) {
  return [...inventory].filter(([, level]) => level <= threshold).map(([sku]) => sku).sort();
}
