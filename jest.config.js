// Jest 29 in jsdom; TypeScript and the ES-module-only packages Grafana's
// UI depends on (d3's .mjs) go through @swc/jest.
const esm = ['d3-[a-z-]+', 'internmap', '@react-hookz', '@ver0', 'marked', 'uuid', 'react-calendar', 'get-user-locale', 'memoize', 'mimic-function', '@wojtekmaj', 'date-fns', 'ol', 'rbush', 'quickselect'].join('|');

module.exports = {
  testEnvironment: 'jsdom',
  roots: ['<rootDir>/src'],
  setupFilesAfterEnv: ['<rootDir>/jest.setup.js'],
  transform: {
    '^.+\\.(t|j)sx?$|^.+\\.mjs$': [
      '@swc/jest',
      {
        jsc: {
          parser: { syntax: 'typescript', tsx: true },
          transform: { react: { runtime: 'classic' } },
        },
        module: { type: 'commonjs' },
      },
    ],
  },
  transformIgnorePatterns: [`node_modules/(?!(${esm})/)`],
  moduleFileExtensions: ['ts', 'tsx', 'js', 'jsx', 'mjs', 'json'],
  moduleNameMapper: { '\\.(css|scss|svg)$': '<rootDir>/src/__mocks__/style.js' },
};
