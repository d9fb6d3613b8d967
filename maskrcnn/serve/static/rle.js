// COCO compressed RLE -> run lengths, as pycocotools' rleFrString reads them: each count is
// written in 5-bit groups (6th bit: more follow), sign-extended, and from the third count on
// stored as the difference to the count two before it. (32-bit bit operations: images up to
// 2^29 pixels.)
function decodeRleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// Calls fn(x, y) for every pixel of the mask. Runs alternate 0s and 1s, starting with 0s, over
// the pixels in column-major order (down each column, then the next column).
function forEachMaskPixel(rle, fn) {
  const height = rle.size[0];
  const counts = decodeRleCounts(rle.counts);
  let index = 0;
  for (let i = 0; i < counts.length; i++) {
    if (i % 2 === 1) {
      for (let j = index; j < index + counts[i]; j++) fn(Math.floor(j / height), j % height);
    }
    index += counts[i];
  }
}
