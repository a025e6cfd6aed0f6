export declare const H = 1;
