export declare const B = 2;
