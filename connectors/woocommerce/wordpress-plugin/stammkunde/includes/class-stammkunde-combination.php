<?php
/**
 * Combination offers ("Kaufe 2 × X, erhalte Y gratis"): a reward code that needs products in the
 * cart before it applies.
 *
 * The app creates such a code as a coupon for the product given (product_ids,
 * limit_usage_to_x_items, a percentage) and stores what must be bought as coupon meta, because
 * WooCommerce core has no "requires X in the cart" condition. This part refuses the coupon,
 * with a message that says what is missing, until the cart (or order) holds them, through
 * WooCommerce's `woocommerce_coupon_is_valid` filter: WC_Discounts::is_coupon_valid() turns an
 * exception thrown there into the coupon error the customer sees.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * The purchase condition of combination-offer coupons.
 */
class Stammkunde_Combination {

	const META_IDS      = '_stammkunde_buys_ids';
	const META_QUANTITY = '_stammkunde_buys_quantity';
	const META_LABEL    = '_stammkunde_buys_label';

	/**
	 * Hook the coupon check.
	 */
	public function register() {
		add_filter( 'woocommerce_coupon_is_valid', array( $this, 'check' ), 10, 3 );
	}

	/**
	 * Refuse a combination-offer coupon until the cart holds what must be bought.
	 *
	 * A product counts by its own id or, for a variation, by its parent's too. When the product
	 * given is among those to buy ("buy 2, get a third free"), the units given do not count
	 * towards the purchase: WooCommerce discounts up to limit_usage_to_x_items of them.
	 *
	 * @param bool         $valid     Whether the coupon is valid so far.
	 * @param WC_Coupon    $coupon    The coupon.
	 * @param WC_Discounts $discounts The cart's or order's items.
	 * @return bool
	 * @throws Exception The cart lacks what the offer needs (the message says what).
	 */
	public function check( $valid, $coupon, $discounts = null ) {
		if ( ! $valid || ! is_object( $coupon ) || ! is_callable( array( $coupon, 'get_meta' ) ) ) {
			return $valid;
		}
		$ids = self::ids( $coupon->get_meta( self::META_IDS ) );
		if ( ! $ids ) {
			return $valid;
		}
		$needed = max( 1, (int) $coupon->get_meta( self::META_QUANTITY ) );
		$given  = array_map( 'intval', (array) $coupon->get_product_ids() );
		if ( array_intersect( $ids, $given ) ) {
			$needed += max( 1, (int) $coupon->get_limit_usage_to_x_items() );
		}
		if ( self::count( $discounts, $ids ) >= $needed ) {
			return $valid;
		}
		$label = trim( (string) $coupon->get_meta( self::META_LABEL ) );
		$have  = self::count( $discounts, $ids );
		throw new Exception(
			esc_html(
				sprintf(
					/* translators: 1: how many must be bought, 2: the product's name, 3: how many the cart holds */
					__( 'This code applies once your cart holds %1$d × %2$s (it holds %3$d).', 'stammkunde' ),
					(int) $coupon->get_meta( self::META_QUANTITY ),
					'' !== $label ? $label : __( 'the products of the offer', 'stammkunde' ),
					$have
				)
			),
			100
		);
	}

	/**
	 * The ids of "71,73" as integers.
	 *
	 * @param mixed $value The meta value.
	 * @return int[]
	 */
	private static function ids( $value ) {
		$ids = array();
		foreach ( explode( ',', is_scalar( $value ) ? (string) $value : '' ) as $part ) {
			if ( ctype_digit( trim( $part ) ) && (int) trim( $part ) > 0 ) {
				$ids[] = (int) trim( $part );
			}
		}
		return $ids;
	}

	/**
	 * How many units of the listed products the items hold.
	 *
	 * @param WC_Discounts|null $discounts The cart's or order's items.
	 * @param int[]             $ids       Product or variation ids.
	 * @return int
	 */
	private static function count( $discounts, array $ids ) {
		if ( ! is_object( $discounts ) || ! is_callable( array( $discounts, 'get_items' ) ) ) {
			return 0;
		}
		$count = 0;
		foreach ( (array) $discounts->get_items() as $item ) {
			$product = is_object( $item ) && isset( $item->product ) ? $item->product : null;
			if ( ! is_object( $product ) ) {
				continue;
			}
			$own = array( (int) $product->get_id(), (int) $product->get_parent_id() );
			if ( array_intersect( $own, $ids ) ) {
				$count += (int) $item->quantity;
			}
		}
		return $count;
	}
}
