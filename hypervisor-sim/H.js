export const H = 1;
//# sourceMappingURL=H.js.map
