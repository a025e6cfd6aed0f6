export const B = 2;
//# sourceMappingURL=B.js.map
