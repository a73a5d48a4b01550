<?php
/**
 * Combination offers: a coupon with the app's "buy X" meta is refused until the cart holds X.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

/** A coupon as the app creates it for "buy 2 × Espresso-Bohnen, get 1 × Tasse free". */
final class SK_Coupon {
	public $meta;
	public $product_ids;
	public $limit;
	public function __construct( array $meta, array $product_ids = array( 10 ), $limit = 1 ) {
		$this->meta = $meta;
		$this->product_ids = $product_ids;
		$this->limit = $limit;
	}
	public function get_meta( $key ) {
		return $this->meta[ $key ] ?? '';
	}
	public function get_product_ids() {
		return $this->product_ids;
	}
	public function get_limit_usage_to_x_items() {
		return $this->limit;
	}
}

/** A product or variation of a cart line. */
final class SK_LineProduct {
	private $id;
	private $parent;
	public function __construct( $id, $parent = 0 ) {
		$this->id = $id;
		$this->parent = $parent;
	}
	public function get_id() {
		return $this->id;
	}
	public function get_parent_id() {
		return $this->parent;
	}
}

/** WC_Discounts' items: objects with ->product and ->quantity, as set_items_from_cart makes them. */
final class SK_Discounts {
	private $items = array();
	public function __construct( array $lines ) {
		foreach ( $lines as $line ) {
			$item = new stdClass();
			$item->product = new SK_LineProduct( $line[0], $line[1] ?? 0 );
			$item->quantity = $line[2] ?? 1;
			$this->items[] = $item;
		}
	}
	public function get_items() {
		return $this->items;
	}
}

final class CombinationTest extends TestCase {

	const META = array(
		'_stammkunde_buys_ids'      => '71,73',
		'_stammkunde_buys_quantity' => '2',
		'_stammkunde_buys_label'    => 'Espresso-Bohnen',
	);

	protected function setUp(): void {
		SK::reset();
	}

	private static function valid( $coupon, $discounts ) {
		return apply_filters( 'woocommerce_coupon_is_valid', true, $coupon, $discounts );
	}

	public function test_the_plugin_hooks_the_coupon_check() {
		( new Stammkunde_Plugin( new Stammkunde_Client(), new Stammkunde_Cart() ) )->register();

		$callbacks = array_map( function ( $entry ) { return $entry[0]; }, SK::$hooks['woocommerce_coupon_is_valid'] ?? array() );

		$this->assertCount( 1, $callbacks );
		$this->assertInstanceOf( Stammkunde_Combination::class, $callbacks[0][0] );
	}

	public function test_code_is_refused_with_what_is_missing_until_the_cart_holds_the_products() {
		( new Stammkunde_Combination() )->register();
		$coupon = new SK_Coupon( self::META );

		try {
			self::valid( $coupon, new SK_Discounts( array( array( 71, 0, 1 ), array( 10, 0, 1 ) ) ) );
			$this->fail( 'a cart with one of the two products to buy was accepted' );
		} catch ( Exception $e ) {
			$this->assertSame( 'This code applies once your cart holds 2 × Espresso-Bohnen (it holds 1).', $e->getMessage() );
			$this->assertSame( 100, $e->getCode() );
		}
	}

	public function test_code_applies_with_the_products_bought_counting_variations_by_their_parent() {
		( new Stammkunde_Combination() )->register();
		$coupon = new SK_Coupon( self::META );

		// one unit of product 71, one of a variation (88) of product 73, and the cup given (10)
		$this->assertTrue( self::valid( $coupon, new SK_Discounts( array( array( 71, 0, 1 ), array( 88, 73, 1 ), array( 10, 0, 1 ) ) ) ) );
	}

	public function test_units_given_do_not_count_towards_the_purchase_of_the_same_product() {
		( new Stammkunde_Combination() )->register();
		// buy 2 × product 71, get a third 71 free
		$coupon = new SK_Coupon( array( '_stammkunde_buys_ids' => '71', '_stammkunde_buys_quantity' => '2', '_stammkunde_buys_label' => 'Espresso-Bohnen' ), array( 71 ), 1 );

		$this->assertTrue( self::valid( $coupon, new SK_Discounts( array( array( 71, 0, 3 ) ) ) ) );
		$this->expectExceptionMessage( 'This code applies once your cart holds 2 × Espresso-Bohnen (it holds 2).' );
		self::valid( $coupon, new SK_Discounts( array( array( 71, 0, 2 ) ) ) );
	}

	public function test_other_coupons_and_coupons_already_refused_are_left_alone() {
		( new Stammkunde_Combination() )->register();
		$empty = new SK_Discounts( array() );

		$this->assertTrue( self::valid( new SK_Coupon( array() ), $empty ) );
		$this->assertFalse( apply_filters( 'woocommerce_coupon_is_valid', false, new SK_Coupon( self::META ), $empty ) );
	}

	public function test_message_names_the_offer_when_the_coupon_has_no_name_for_it() {
		( new Stammkunde_Combination() )->register();
		$coupon = new SK_Coupon( array( '_stammkunde_buys_ids' => '71', '_stammkunde_buys_quantity' => '1' ) );

		$this->expectExceptionMessage( 'This code applies once your cart holds 1 × the products of the offer (it holds 0).' );
		self::valid( $coupon, new SK_Discounts( array( array( 10, 0, 1 ) ) ) );
	}
}
